import { useQueryClient } from '@tanstack/react-query';
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { useLocation, useNavigate } from 'react-router';
import { api, ok, onSessionExpired, setCsrfToken } from './api/client';
import { ApiError } from './api/errors';
import type { Role, SessionView } from './api/views';
import type { CeremonyAnswer } from './api/webauthn';

/**
 * The browser session (cookie set by the vault, HttpOnly): who is signed in and the CSRF token for this page's
 * lifetime. A reloaded page asks GET /v1/auth/session again; nothing about the session is kept in web storage.
 */
type State = { status: 'loading' } | { status: 'signed-out'; expired: boolean } | { status: 'signed-in'; session: SessionView };

interface SessionContextValue {
  state: State;
  /** `assertion`: the security key's answer to the login challenge that MFA_REQUIRED carried. */
  signIn(input: { username: string; password: string; code?: string; assertion?: CeremonyAnswer }): Promise<SessionView>;
  signOut(): Promise<void>;
  /** Takes a fresh session the vault answered (TOTP enrolment confirmed from a cookie session issues a new one). */
  adopt(session: SessionView): void;
  /** Re-reads the session (e.g. after the profile changed). */
  refresh(): Promise<void>;
}

const SessionContext = createContext<SessionContextValue | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<State>({ status: 'loading' });
  const queries = useQueryClient();
  const navigate = useNavigate();
  const location = useLocation();

  const adopt = useCallback((session: SessionView) => {
    setCsrfToken(session.csrfToken);
    setState({ status: 'signed-in', session });
  }, []);

  const end = useCallback(
    (expired: boolean) => {
      setCsrfToken(null);
      // nothing read under the ended session may be shown to whoever signs in next
      queries.clear();
      setState({ status: 'signed-out', expired });
    },
    [queries],
  );

  const refresh = useCallback(async () => {
    try {
      adopt(ok(await api.GET('/v1/auth/session')));
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) end(false);
      else throw e;
    }
  }, [adopt, end]);

  useEffect(() => {
    refresh().catch(() => setState({ status: 'signed-out', expired: false }));
  }, [refresh]);

  useEffect(
    () =>
      onSessionExpired(() => {
        end(true);
        navigate('/sign-in', { replace: true, state: { from: location.pathname } });
      }),
    [end, navigate, location.pathname],
  );

  const value = useMemo<SessionContextValue>(
    () => ({
      state,
      adopt,
      refresh,
      async signIn(input) {
        const session = ok(await api.POST('/v1/auth/session', { body: input }));
        adopt(session);
        return session;
      },
      async signOut() {
        try {
          await api.DELETE('/v1/auth/session');
        } finally {
          end(false);
          navigate('/sign-in', { replace: true });
        }
      },
    }),
    [state, adopt, refresh, end, navigate],
  );

  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionContextValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error('useSession outside SessionProvider');
  return value;
}

/** The signed-in session; only for pages under the signed-in layout (it renders nothing until there is one). */
export function useMe(): SessionView['user'] & { has(...roles: Role[]): boolean } {
  const { state } = useSession();
  if (state.status !== 'signed-in') throw new Error('useMe without a session');
  const user = state.session.user;
  return { ...user, has: (...roles) => roles.some((r) => user.roles.includes(r)) };
}
