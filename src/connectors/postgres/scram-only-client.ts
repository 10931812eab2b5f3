import { checkServerIdentity, ConnectionOptions, PeerCertificate } from 'node:tls';
import { Client, ClientConfig } from 'pg';
import { ConnectorError } from '../connector.errors';
import type { TargetOptions } from '../connector.interface';

/** The parts of pg's Client (8.x, lib/client.js) this subclass hooks into; not in its public types. */
interface PgClientInternals {
  connection: { stream: { destroy(): void }; on(event: string, listener: (msg: unknown) => void): void };
  _connecting: boolean;
  saslSession: unknown;
  _attachListeners(con: unknown): void;
  _handleAuthSASL(msg: { mechanisms: string[] }): void;
  _handleAuthSASLFinal(msg: unknown): void;
  _handleReadyForQuery(msg: unknown): void;
  _handleErrorWhileConnecting(err: Error): void;
}

const base = Client.prototype as unknown as PgClientInternals;

/** The fewest PBKDF2 iterations a server's SCRAM challenge may ask for (RFC 7677's minimum, PostgreSQL's default). */
const MIN_SCRAM_ITERATIONS = 4096;

/** Whether the target uses TLS: always, unless its options say `tls: false` explicitly. */
export function usesTls(options: TargetOptions): boolean {
  return options.tls !== false;
}

/** What a refused server identity is answered with. */
export function identityUnverified(why: string): ConnectorError {
  return new ConnectorError('TARGET_IDENTITY_UNVERIFIED', `PostgreSQL server identity not established: ${why}; no password and no statement was sent`);
}

export interface ScramOnlyConfig extends ClientConfig {
  /** Require SCRAM-SHA-256-PLUS (channel binding to the TLS certificate): set with TLS. */
  requireChannelBinding?: boolean;
}

/**
 * pg's Client, but a password (admin or account) is only ever proven through SCRAM-SHA-256 (INVARIANT 19):
 * - a server asking for the password in cleartext or as MD5 is refused before anything is sent (a fake or
 *   downgraded server would otherwise receive the password itself, or a hash it can replay);
 * - a server saying "authentication OK" without a completed SCRAM exchange (whose final message proves the server
 *   knows the verifier) is refused before any statement is sent, and so is one whose SCRAM proof does not check out;
 * - a SCRAM challenge asking for fewer than {@link MIN_SCRAM_ITERATIONS} iterations is refused before the proof is sent;
 * - with `requireChannelBinding` (TLS), only SCRAM-SHA-256-PLUS is accepted, bound to the server's certificate.
 */
export class ScramOnlyClient extends Client {
  private scramVerified = false;
  private readonly requireChannelBinding: boolean;
  /** The transaction status of the last ReadyForQuery: 'I' idle, 'T' in a transaction, 'E' in a failed one. */
  transactionStatus = 'I';
  /**
   * Set when the server reported, after the login, a change of the session's identity or search path (ParameterStatus
   * of session_authorization, is_superuser, or search_path on PostgreSQL 18+): a pooled connection so marked is closed.
   */
  sessionChanged = false;

  constructor(config: ScramOnlyConfig) {
    const { requireChannelBinding, ...rest } = config;
    super({ ...rest, enableChannelBinding: !!requireChannelBinding });
    this.requireChannelBinding = !!requireChannelBinding;
  }

  /** pg: the server sent AuthenticationCleartextPassword. */
  _handleAuthCleartextPassword(): void {
    this.refuse('it asked for the password in cleartext (only SCRAM-SHA-256 is used)');
  }

  /** pg: the server sent AuthenticationMD5Password. */
  _handleAuthMD5Password(): void {
    this.refuse('it asked for an MD5 password hash (only SCRAM-SHA-256 is used)');
  }

  _handleAuthSASL(msg: { mechanisms: string[] }): void {
    if (this.requireChannelBinding && !msg.mechanisms.includes('SCRAM-SHA-256-PLUS')) {
      this.refuse('it does not offer SCRAM-SHA-256-PLUS (channel binding) over TLS');
      return;
    }
    base._handleAuthSASL.call(this, msg);
  }

  /**
   * pg: the server's first SCRAM message (salt, iteration count). A low iteration count makes the proof the vault is
   * about to send cheap to brute-force by whoever sees it (or by a fake server that chose it): refused before the proof.
   */
  _handleAuthSASLContinue(msg: { data: string }): void {
    const m = /(?:^|,)i=(\d+)(?:,|$)/.exec(typeof msg?.data === 'string' ? msg.data : '');
    const iterations = m ? Number(m[1]) : NaN;
    if (!(iterations >= MIN_SCRAM_ITERATIONS)) {
      this.refuse(`its SCRAM-SHA-256 challenge asks for ${Number.isFinite(iterations) ? iterations : 'no valid'} iterations (at least ${MIN_SCRAM_ITERATIONS} are required)`);
      return;
    }
    (base as unknown as { _handleAuthSASLContinue(msg: unknown): void })._handleAuthSASLContinue.call(this, msg);
  }

  _handleAuthSASLFinal(msg: unknown): void {
    base._handleAuthSASLFinal.call(this, msg);
    // pg clears the session only when the server's signature checked out (else it emitted an error)
    if ((this as unknown as PgClientInternals).saslSession === null) this.scramVerified = true;
  }

  _attachListeners(con: PgClientInternals['connection']): void {
    base._attachListeners.call(this, con);
    con.on('authenticationOk', () => {
      if (!this.scramVerified) this.refuse('it accepted the login without a SCRAM-SHA-256 exchange');
    });
    const atLogin = new Map<string, string>();
    con.on('parameterStatus', (msg: unknown) => {
      const { parameterName: name, parameterValue: value } = msg as { parameterName: string; parameterValue: string };
      if (!['session_authorization', 'is_superuser', 'search_path'].includes(name)) return;
      if ((this as unknown as PgClientInternals)._connecting) atLogin.set(name, value);
      else if (atLogin.has(name) ? atLogin.get(name) !== value : name !== 'search_path' || value !== 'pg_catalog') this.sessionChanged = true;
    });
  }

  _handleReadyForQuery(msg: unknown): void {
    const self = this as unknown as PgClientInternals;
    const status = (msg as { status?: unknown })?.status;
    if (typeof status === 'string') this.transactionStatus = status;
    // belt and braces: the connection is never handed out (no statement sent) unless SCRAM completed
    if (self._connecting && !this.scramVerified) {
      this.refuse('it accepted the login without a SCRAM-SHA-256 exchange');
      return;
    }
    base._handleReadyForQuery.call(this, msg);
  }

  /** pg's own SCRAM checks (no SCRAM offered, a nonce or server signature that does not match) fail as `SASL: …`. */
  _handleErrorWhileConnecting(err: Error): void {
    const sasl = typeof err?.message === 'string' && err.message.startsWith('SASL:');
    base._handleErrorWhileConnecting.call(this, sasl ? identityUnverified(`its SCRAM-SHA-256 exchange failed (${err.message.slice(0, 120)})`) : err);
  }

  private refuse(why: string): void {
    const self = this as unknown as PgClientInternals;
    if (!self._connecting) return;
    self._handleErrorWhileConnecting(identityUnverified(why));
    self.connection.stream.destroy();
  }
}

/**
 * `ssl` for pg: TLS is required unless the target says `tls: false`. The certificate must chain to `tlsCa` (or the
 * system's CAs), name the host (Node's checkServerIdentity), and, when pinned, have that SHA-256 fingerprint.
 */
export function tlsOptions(options: TargetOptions): ConnectionOptions | undefined {
  if (!usesTls(options)) return undefined;
  const pin = options.tlsCertSha256?.toUpperCase();
  return {
    ...(options.tlsCa ? { ca: [options.tlsCa] } : {}),
    rejectUnauthorized: true,
    checkServerIdentity: (host: string, cert: PeerCertificate) => {
      const err = checkServerIdentity(host, cert);
      if (err) return err;
      if (pin && cert.fingerprint256?.toUpperCase() !== pin) {
        return Object.assign(new Error('the server certificate does not match the pinned SHA-256 fingerprint'), { code: 'ERR_TLS_CERT_PIN_MISMATCH' });
      }
      return undefined;
    },
  };
}

/** TLS-layer failures: the certificate did not verify, the host name or pin did not match, the server refused TLS. */
export function isTlsIdentityFailure(e: unknown): string | undefined {
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === 'string' ? err.code : '';
  const message = typeof err?.message === 'string' ? err.message : '';
  if (code === 'ERR_TLS_CERT_PIN_MISMATCH') return 'the server certificate does not match the pinned SHA-256 fingerprint';
  if (/^(ERR_TLS_CERT_ALTNAME_INVALID|HOSTNAME_MISMATCH)$/.test(code)) return 'the server certificate does not name the host';
  if (/^(UNABLE_TO_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_|ERR_TLS_|ERR_SSL_)/.test(code)) return `the server certificate did not verify (${code})`;
  if (/does not support SSL connections|error establishing an SSL connection/.test(message)) return 'the server does not offer TLS, which this target requires';
  return undefined;
}
