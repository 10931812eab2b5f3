import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { errors, generators } from 'openid-client';
import { DataSource, EntityManager } from 'typeorm';
import { Clock } from '../../common/clock';
import { DomainException, Errors } from '../../common/errors';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { SecretBoxService } from '../../crypto/secret-box.service';
import { LoginResponse } from '../identity.dto';
import { ThrottleService } from '../throttle.service';
import { hashToken, insertBrowserSession, insertSession } from '../sessions';
import { OidcAccounts } from './oidc-accounts';
import { OidcClients } from './oidc-clients';
import { DeviceAuthorizationView, OidcSignInOption } from './oidc.dto';
import { OidcProviderEntity } from './oidc-provider.entity';
import { logins, providers } from './oidc-store';

/** The vault's handle of a device sign-in (what the CLI polls with); the IdP's device code stays in the vault. */
const DEVICE_HANDLE_PREFIX = 'pvd_';
/** Callbacks with a state of no sign-in that one address gets audited per minute (refused all the same beyond). */
const UNKNOWN_STATES_AUDITED_PER_MINUTE = 10;
/** RFC 8628's default poll interval. */
const DEVICE_INTERVAL_SECONDS = 5;

const sha256 = (v: string) => createHash('sha256').update(v, 'utf8').digest();
const loginRef = (id: string, column: 'code_verifier' | 'device_code') => ({ table: 'oidc_logins', rowId: id, column });

/** What the browser sign-in can end with instead of a session: the sign-in page's `?error=`. */
export type BrowserRefusal =
  | 'OIDC_STATE_INVALID'
  | 'OIDC_TOKEN_INVALID'
  | 'OIDC_PROVIDER_UNAVAILABLE'
  | 'ACCESS_DENIED'
  | 'OIDC_NO_ROLES'
  | 'OIDC_USERNAME_TAKEN'
  | 'OIDC_USERNAME_INVALID'
  | 'OIDC_ACCOUNT_DISABLED'
  | 'THROTTLED';

/** Where the sign-in page is, and how a refusal reaches it (`?error=CODE`; the page says it in words). */
export const SIGN_IN_PAGE = '/portal/sign-in';
const refusedAt = (code: BrowserRefusal) => `${SIGN_IN_PAGE}?error=${code}`;

/**
 * Only a path of the portal is a place to return to after sign-in: `/portal/…`, no scheme, host, backslash or control
 * character (an open redirect would hand a freshly signed-in browser to another site). Anything else: `/portal/`.
 */
export function safeReturnTo(v: unknown): string {
  if (typeof v !== 'string' || v.length > 1000 || !v.startsWith('/portal/') || /[\\\x00-\x1f\x7f]/.test(v)) return '/portal/';
  try {
    const url = new URL(v, 'http://vault.invalid');
    return url.origin === 'http://vault.invalid' && url.pathname.startsWith('/portal/') ? url.pathname + url.search + url.hash : '/portal/';
  } catch {
    return '/portal/';
  }
}

export interface BrowserOutcome {
  location: string;
  /** A new browser session (the cookie's value) when the sign-in succeeded. */
  sessionToken?: string;
}

/**
 * Single sign-on with OpenID Connect (README "Single sign-on"): the portal's code flow (PKCE S256, state, nonce, and
 * the state bound to the browser that started it by a cookie) and the CLI's device flow, both ending in the same user
 * provisioning (OidcAccounts) and the same kinds of session a password sign-in makes.
 */
@Injectable()
export class OidcSignInService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly clients: OidcClients,
    private readonly accounts: OidcAccounts,
    private readonly secretBox: SecretBoxService,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly throttle: ThrottleService,
  ) {}

  /** The enabled providers: the sign-in page's buttons. */
  async options(): Promise<OidcSignInOption[]> {
    return (await providers.list(this.dataSource.manager)).filter((p) => p.enabled).map((p) => ({ name: p.name, displayName: p.displayName }));
  }

  /**
   * A browser starts signing in (404 for an unknown or disabled provider): a pending sign-in row (state and binding hashed, PKCE verifier encrypted) and the
   * redirect to the provider. `binding` goes into the browser's cookie.
   */
  async start(name: string, returnTo: unknown, address: string | undefined): Promise<{ location: string; binding?: string }> {
    const p = await this.enabledProvider(name);
    if (!(await this.countStart(address).then(() => true, () => false))) return { location: refusedAt('THROTTLED') };
    const client = await this.clients.client(p).catch(() => undefined);
    if (!client) return { location: refusedAt('OIDC_PROVIDER_UNAVAILABLE') };
    const state = generators.state();
    const nonce = generators.nonce();
    const verifier = generators.codeVerifier();
    const binding = randomBytes(32).toString('base64url');
    const id = randomUUID();
    const now = this.clock.now();
    await this.purgeNow(now);
    await logins.insertBrowser(this.dataSource.manager, {
      id,
      provider: p.name,
      stateHash: sha256(state),
      bindingHash: sha256(binding),
      nonce,
      codeVerifier: this.secretBox.encrypt(loginRef(id, 'code_verifier'), verifier),
      returnTo: safeReturnTo(returnTo),
      expiresAt: new Date(now.getTime() + this.config.signIn.oidcLoginSeconds * 1000),
    });
    const location = client.authorizationUrl({
      scope: p.scopes.join(' '),
      state,
      nonce,
      code_challenge: generators.codeChallenge(verifier),
      code_challenge_method: 'S256',
      redirect_uri: this.clients.redirectUri(),
    });
    return { location, binding };
  }

  /**
   * The provider sent the browser back. The state must be of a pending sign-in this browser started (its binding
   * cookie), used once; the code is exchanged with the PKCE verifier and the ID token verified in full (signature,
   * issuer, audience, expiry, nonce). Every refusal is audited and ends on the sign-in page with its code.
   */
  async callback(params: Record<string, string>, binding: string | undefined, presented: string | undefined, address: string | undefined): Promise<BrowserOutcome> {
    const refuse = async (code: BrowserRefusal, reason: string, provider: string | null = null): Promise<BrowserOutcome> => {
      await this.accounts.auditRefusal({ provider, address, session: 'browser', code, detail: reason });
      return { location: refusedAt(code) };
    };
    // a state that belongs to no sign-in is anyone's to send: audited within a budget per address (the audit chain is
    // not a place one client may fill), refused all the same
    const unknownState = async (why: string) =>
      (await this.throttle.limit(`oidc-callback:${address ?? 'unknown'}`, UNKNOWN_STATES_AUDITED_PER_MINUTE).then(() => true, () => false))
        ? refuse('OIDC_STATE_INVALID', why)
        : { location: refusedAt('OIDC_STATE_INVALID') };
    const state = params.state;
    if (typeof state !== 'string' || state.length === 0 || state.length > 200) return unknownState('no state');
    const row = await logins.takeBrowser(this.dataSource.manager, sha256(state), this.clock.now());
    if (!row) return unknownState('unknown, used or expired state');
    if (binding === undefined || !timingSafeEqual(sha256(binding), row.browserBindingHash!)) return refuse('OIDC_STATE_INVALID', 'the binding cookie is missing or not this sign-in', row.provider);
    if (params.error !== undefined) return refuse('ACCESS_DENIED', `the identity provider answered ${String(params.error).replace(/[^\w.-]/g, '').slice(0, 60)}`, row.provider);
    const p = await this.enabledProvider(row.provider).catch(() => undefined);
    const client = p && (await this.clients.client(p).catch(() => undefined));
    if (!p || !client) return refuse('OIDC_PROVIDER_UNAVAILABLE', 'provider unknown, disabled or not answering', row.provider);
    let tokens;
    try {
      const verifier = this.secretBox.decrypt(loginRef(row.id, 'code_verifier'), row.codeVerifier!);
      tokens = await client.callback(this.clients.redirectUri(), params, { state, nonce: row.nonce!, code_verifier: verifier, response_type: 'code' });
    } catch (e) {
      return refuse('OIDC_TOKEN_INVALID', whyRefused(e), p.name);
    }
    try {
      const issue = async (em: EntityManager, userId: string) => {
        if (presented !== undefined) await em.query(`UPDATE access_tokens SET revoked_at = now() WHERE token_hash = $1 AND kind = 'browser' AND revoked_at IS NULL`, [hashToken(presented)]);
        return insertBrowserSession(em, userId, this.clock.now(), this.config.portal.sessionSeconds);
      };
      const { issued } = await this.accounts.signIn(p, tokens.claims(), 'browser', address, issue, { refreshToken: tokens.refresh_token, tokenHashOf: (i) => hashToken(i.token) });
      return { location: row.returnTo ?? '/portal/', sessionToken: issued.token };
    } catch (e) {
      if (e instanceof DomainException && isRefusal(e.code)) return { location: refusedAt(e.code) };
      throw e;
    }
  }

  /** The CLI starts a device sign-in: the IdP's device authorization, kept (encrypted) under a handle of the vault's. */
  async startDevice(name: string, address: string | undefined): Promise<DeviceAuthorizationView> {
    const p = await this.enabledProvider(name);
    await this.countStart(address);
    const client = await this.clients.client(p);
    const handle = await client.deviceAuthorization({ scope: p.scopes.join(' ') }).catch(() => {
      throw new DomainException('OIDC_PROVIDER_UNAVAILABLE', `identity provider ${p.name} refused or did not answer the device authorization`);
    });
    // what the CLI prints for a person to follow: plain http(s) URLs and a printable code, nothing a terminal would obey
    const printable = (v: unknown) => typeof v === 'string' && /^[\x21-\x7e]{1,500}$/.test(v);
    const urlOk = (v: unknown) => printable(v) && /^https?:\/\//.test(v as string);
    if (!/^[\x20-\x7e]{1,64}$/.test(handle.user_code) || !urlOk(handle.verification_uri) || (handle.verification_uri_complete !== undefined && !urlOk(handle.verification_uri_complete))) {
      throw new DomainException('OIDC_PROVIDER_UNAVAILABLE', `identity provider ${p.name} answered a device authorization the vault does not pass on`);
    }
    const vaultHandle = DEVICE_HANDLE_PREFIX + randomBytes(32).toString('base64url');
    const id = randomUUID();
    const now = this.clock.now();
    const expiresIn = Math.max(1, Math.min(handle.expires_in, this.config.signIn.oidcLoginSeconds));
    await this.purgeNow(now);
    await logins.insertDevice(this.dataSource.manager, {
      id,
      provider: p.name,
      handleHash: sha256(vaultHandle),
      deviceCode: this.secretBox.encrypt(loginRef(id, 'device_code'), handle.device_code),
      intervalSeconds: DEVICE_INTERVAL_SECONDS,
      expiresAt: new Date(now.getTime() + expiresIn * 1000),
      now,
    });
    return {
      deviceCode: vaultHandle,
      userCode: handle.user_code,
      verificationUri: handle.verification_uri,
      verificationUriComplete: handle.verification_uri_complete ?? null,
      interval: DEVICE_INTERVAL_SECONDS,
      expiresIn,
    };
  }

  /**
   * One poll of the CLI: 400 AUTHORIZATION_PENDING / SLOW_DOWN (polled within `interval` of the last poll, or the IdP
   * said so: the interval grows by 5 s) / EXPIRED_TOKEN / ACCESS_DENIED, or — once the user approved at the IdP and the
   * ID token verified — a bearer token exactly as POST /v1/auth/login answers.
   */
  async pollDevice(handle: string, address: string | undefined): Promise<LoginResponse> {
    const now = this.clock.now();
    const row = handle.startsWith(DEVICE_HANDLE_PREFIX) ? await logins.poll(this.dataSource.manager, sha256(handle), now) : undefined;
    if (!row || row.usedAt !== null || row.expiresAt <= now) throw new DomainException('EXPIRED_TOKEN', 'this device sign-in is unknown, expired or already used: start again');
    if (row.early) throw new DomainException('SLOW_DOWN', `poll at most every ${row.intervalSeconds} seconds`, { interval: row.intervalSeconds });
    const p = await this.enabledProvider(row.provider);
    const client = await this.clients.client(p);
    let tokens;
    try {
      tokens = await this.clients.deviceGrant(client, this.secretBox.decrypt(loginRef(row.id, 'device_code'), row.deviceCode!));
    } catch (e) {
      throw await this.deviceRefusal(e, row.id, p.name, row.intervalSeconds ?? DEVICE_INTERVAL_SECONDS, address);
    }
    if (!(await logins.finish(this.dataSource.manager, row.id))) throw new DomainException('EXPIRED_TOKEN', 'this device sign-in was already used');
    const issue = (em: EntityManager, userId: string) => insertSession(em, userId, this.clock.now(), this.config.tokenTtlSeconds);
    const { issued, actor } = await this.accounts.signIn(p, tokens.claims(), 'bearer', address, issue, { refreshToken: tokens.refresh_token, tokenHashOf: (i) => hashToken(i.accessToken) });
    return { ...issued, mfaEnrollmentRequired: !actor.mfaEnrolled };
  }

  private async deviceRefusal(e: unknown, id: string, provider: string, interval: number, address: string | undefined): Promise<DomainException> {
    if (e instanceof errors.OPError) {
      switch (e.error) {
        case 'authorization_pending':
          return new DomainException('AUTHORIZATION_PENDING', 'the user has not finished at the identity provider yet', { interval });
        case 'slow_down':
          await logins.slowDown(this.dataSource.manager, id);
          return new DomainException('SLOW_DOWN', `poll at most every ${interval + 5} seconds`, { interval: interval + 5 });
        case 'access_denied':
          await logins.finish(this.dataSource.manager, id);
          return new DomainException('ACCESS_DENIED', 'the authorization was refused at the identity provider');
        case 'expired_token':
        case 'invalid_grant':
          await logins.finish(this.dataSource.manager, id);
          return new DomainException('EXPIRED_TOKEN', 'the device code expired at the identity provider: start again');
        default:
          return new DomainException('OIDC_PROVIDER_UNAVAILABLE', `identity provider ${provider} refused the token request`);
      }
    }
    if (e instanceof DomainException) return e;
    await logins.finish(this.dataSource.manager, id);
    await this.accounts.auditRefusal({ provider, address, session: 'bearer', code: 'OIDC_TOKEN_INVALID', detail: whyRefused(e) });
    return new DomainException('OIDC_TOKEN_INVALID', "the identity provider's ID token did not verify");
  }

  /**
   * Each start makes a row and, for the device flow, a call to the provider with the vault's client credentials: one
   * address gets VAULT_OIDC_STARTS_PER_MINUTE of them (429 THROTTLED after), so nobody fills the table or gets the
   * vault's client rate-limited at the provider.
   */
  private countStart(address: string | undefined): Promise<void> {
    return this.throttle.limit(`oidc-start:${address ?? 'unknown'}`, this.config.signIn.oidcStartsPerMinute);
  }

  /** An unknown or disabled provider is 404 (no sign-in page links to one). */
  private async enabledProvider(name: string): Promise<OidcProviderEntity> {
    const p = await providers.get(this.dataSource.manager, name);
    if (!p || !p.enabled) throw Errors.notFound('enabled identity provider');
    return p;
  }

  /** When this instance last purged old sign-ins (at most once an hour). */
  private lastPurge = -Infinity;

  private async purgeNow(now: Date): Promise<void> {
    if (now.getTime() - this.lastPurge < 3600 * 1000) return;
    this.lastPurge = now.getTime();
    await logins.purge(this.dataSource.manager, now);
  }
}

const REFUSALS: ReadonlySet<string> = new Set<BrowserRefusal>(['OIDC_NO_ROLES', 'OIDC_USERNAME_TAKEN', 'OIDC_USERNAME_INVALID', 'OIDC_ACCOUNT_DISABLED', 'OIDC_TOKEN_INVALID', 'OIDC_PROVIDER_UNAVAILABLE']);
const isRefusal = (code: string): code is BrowserRefusal => REFUSALS.has(code);

/** What failed, for the audit: openid-client's check that refused (issuer, audience, expiry, nonce, signature…), never a token. */
function whyRefused(e: unknown): string {
  if (e instanceof errors.OPError) return `identity provider error ${e.error}`.slice(0, 120);
  if (e instanceof errors.RPError) return e.message.replace(/[^\x20-\x7e]/g, '').slice(0, 200);
  return 'the answer could not be verified';
}
