import { useId, useState } from 'react';
import { api, ok, withMfa } from '../../api/client';
import { useMe, useSession } from '../../session';
import { Notice } from '../../ui/errors';
import { duration, When } from '../../ui/format';
import { Page, Section } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { AuthenticatorApp } from './authenticator-app';
import { SecurityKeys } from './security-keys';

/** The notifications a person may mute (the others — approval requests, claims ready, alerts — always go out). */
const OPTIONAL_NOTIFICATIONS: Array<[kind: string, label: string]> = [
  ['request.approved', 'My request was approved'],
  ['request.denied', 'My request was denied'],
  ['request.lapsed', 'My request lapsed without a decision'],
  ['request.revoked', 'My access was revoked'],
  ['checkout.expiring', 'My checkout is about to expire'],
  ['ephemeral.expiring', 'My one-time account is about to expire'],
];

/** Who I am, my roles and session, where my notifications go and which I mute; sign out. */
export function MePage() {
  const me = useMe();
  const { state, signOut } = useSession();
  const session = state.status === 'signed-in' ? state.session : null;
  return (
    <Page title="Me">
      <Section title="Who you are">
        <dl className="facts">
          <dt>Username</dt>
          <dd>{me.username}</dd>
          <dt>Roles</dt>
          <dd>{me.roles.join(', ') || 'none'}</dd>
          <dt>Authenticator app</dt>
          <dd>{me.mfaMethods.includes('totp') ? 'set up' : 'not set up'}</dd>
          <dt>Security keys</dt>
          <dd>{me.mfaMethods.includes('webauthn') ? 'set up' : 'none'}</dd>
          <dt>User id</dt>
          <dd>
            <code>{me.id}</code>
          </dd>
          {session && (
            <>
              <dt>Session ends</dt>
              <dd>
                <When at={session.expiresAt} />, or after {duration(session.idleTimeoutSeconds)} without activity
              </dd>
            </>
          )}
        </dl>
        <p>
          <button type="button" onClick={() => void signOut()}>
            Sign out
          </button>
        </p>
      </Section>
      <SecurityKeys />
      <AuthenticatorApp />
      <NotificationSettings />
    </Page>
  );
}

function NotificationSettings() {
  const me = useMe();
  const { refresh } = useSession();
  const [email, setEmail] = useState(me.email ?? '');
  const [muted, setMuted] = useState<string[]>(me.mutedNotifications);
  const [saved, setSaved] = useState('');
  const emailId = useId();
  const base = useId();

  const save = async (code: string) => {
    setSaved('');
    const body = { mutedNotifications: muted, ...(email.trim() && email.trim() !== me.email ? { email: email.trim() } : {}) };
    ok(await api.PATCH('/v1/me', withMfa(code, { body })));
    await refresh();
    setSaved('Saved.');
  };

  return (
    <Section title="Notifications">
      <div className="stack">
        <div className="field">
          <label htmlFor={emailId}>E-mail address</label>
          <input id={emailId} type="email" autoComplete="email" value={email} onChange={(e) => setEmail(e.target.value)} />
        </div>
        <fieldset>
          <legend>Mute these notifications</legend>
          {OPTIONAL_NOTIFICATIONS.map(([kind, label], n) => (
            <div key={kind} className="field inline">
              <input
                id={`${base}-${n}`}
                type="checkbox"
                checked={muted.includes(kind)}
                onChange={(e) => setMuted(e.target.checked ? [...muted, kind] : muted.filter((k) => k !== kind))}
              />
              <label htmlFor={`${base}-${n}`}>{label}</label>
            </div>
          ))}
        </fieldset>
        <StepUpAction label="Save notification settings" confirmLabel="Save" onConfirm={save} />
        <Notice>{saved}</Notice>
      </div>
    </Section>
  );
}
