import { checkServerIdentity, PeerCertificate, TLSSocket } from 'node:tls';
import * as mysql from 'mysql2';
import type { Connection, ConnectionOptions } from 'mysql2/promise';
import { ConnectorError } from '../connector.errors';
import type { ConnectorTarget } from '../connector.interface';

/**
 * Establishing a MySQL/MariaDB server's identity before any credential is sent (INVARIANT 19).
 *
 * The MySQL protocol starts in clear text (the server's greeting), then the client asks for TLS (SSLRequest) and
 * only after the TLS handshake sends its handshake response: user name and a password-derived token. The vault
 * always asks for TLS (`ssl` set: mysql2 ends the connection with HANDSHAKE_NO_SSL_SUPPORT before the response when
 * the server does not offer it), verifies the certificate chain against `options.tlsCa` (else the system CAs), and
 * then, in {@link VerifiedConnection.startTLS}, before mysql2 sends anything more, checks the host name / IP the
 * certificate names and, when set, the certificate pin `options.tlsCertSha256`. Auth switches that would send the
 * password itself (mysql_clear_password, sha256_password, caching_sha2_password's full authentication) are answered
 * only on a connection verified that way ({@link guardedAuthPlugins}); anything else is refused.
 *
 * Every refusal is TARGET_IDENTITY_UNVERIFIED; no message holds a secret.
 */

/** TLS sockets whose server identity was established (chain, name, pin). */
const verifiedStreams = new WeakSet<object>();

/** A refusal of the server's identity, raised inside mysql2 and turned into TARGET_IDENTITY_UNVERIFIED by {@link identityRefusal}. */
class IdentityRefused extends Error {}

/** What the server's certificate must satisfy. */
export interface ExpectedIdentity {
  host: string;
  /** Node fingerprint256 (upper-case hex pairs joined by ':'). */
  certSha256?: string;
}

/** Why the certificate a verified chain ended at is not the target's, or undefined when it is. */
function certificateProblem(cert: PeerCertificate, expected: ExpectedIdentity): string | undefined {
  if (!cert || !cert.raw) return 'the server presented no certificate';
  const nameError = checkServerIdentity(expected.host, cert);
  if (nameError) return `the server certificate does not name ${expected.host}: ${nameError.message}`;
  if (expected.certSha256 && cert.fingerprint256.toUpperCase() !== expected.certSha256.trim().toUpperCase()) {
    return `the server certificate's SHA-256 ${cert.fingerprint256} is not the pinned one`;
  }
  return undefined;
}

interface CoreConnection {
  stream: unknown;
  destroy(): void;
  promise(): Connection;
  once(event: 'connect' | 'error', listener: (arg: unknown) => void): void;
  on(event: 'error', listener: (arg: unknown) => void): void;
}
type CoreConnectionClass = new (opts: { config: unknown }) => CoreConnection & { startTLS(onSecure: (err?: Error) => void): void };

/** mysql2's connection, checking the server's identity between the TLS handshake and the handshake response. */
function verifiedConnectionClass(expected: ExpectedIdentity): CoreConnectionClass {
  const Base = mysql.Connection as unknown as CoreConnectionClass;
  return class VerifiedConnection extends Base {
    override startTLS(onSecure: (err?: Error) => void): void {
      super.startTLS((err?: Error) => {
        if (err) return onSecure(err); // chain not trusted (rejectUnauthorized), TLS failure
        const socket = this.stream as TLSSocket;
        const problem = socket.authorized ? certificateProblem(socket.getPeerCertificate(true), expected) : `the server certificate is not trusted: ${String(socket.authorizationError)}`;
        if (problem) return onSecure(new IdentityRefused(problem));
        verifiedStreams.add(socket);
        onSecure();
      });
    }
  };
}

/** Auth plugins that may send the password itself: only on a verified TLS connection. */
const PASSWORD_REVEALING_PLUGINS = ['mysql_clear_password', 'sha256_password', 'caching_sha2_password'] as const;

type AuthPlugin = (args: { connection: { stream: unknown }; command: unknown }) => (data: Buffer) => unknown;

/**
 * mysql2 `authPlugins` for the plugins that can reveal the password (in clear, or RSA-encrypted with a key the
 * server sends): they run mysql2's own implementation only when the connection's TLS identity was verified, and
 * refuse the auth switch otherwise, before anything is sent.
 */
export function guardedAuthPlugins(): Record<string, AuthPlugin> {
  const standard = mysql.authPlugins as unknown as Record<string, (opts: object) => AuthPlugin>;
  const out: Record<string, AuthPlugin> = {};
  for (const name of PASSWORD_REVEALING_PLUGINS) {
    out[name] = (args) => {
      if (!verifiedStreams.has(args.connection.stream as object)) {
        throw new IdentityRefused(`the server asked for ${name} authentication, which would send the password, on a connection whose TLS identity is not verified`);
      }
      return standard[name]({})(args);
    };
  }
  return out;
}

/** mysql2 options for a connection to the target: TLS always, verified against `tlsCa` or the system CAs. */
export function tlsConnectionOptions(target: ConnectorTarget): Pick<ConnectionOptions, 'ssl' | 'authPlugins'> {
  return {
    // The chain is verified by Node (rejectUnauthorized); the name (and pin) by VerifiedConnection.startTLS, for DNS names
    // and IP addresses alike (mysql2's verifyIdentity checks an IP target against "localhost": off). A fresh object per
    // connection: mysql2 keys its TLS session cache on it, so no session is resumed across connections.
    ssl: { ca: target.options.tlsCa || undefined, rejectUnauthorized: true, verifyIdentity: false, minVersion: 'TLSv1.2' },
    authPlugins: guardedAuthPlugins() as unknown as ConnectionOptions['authPlugins'],
  };
}

/** Opens a mysql2 connection whose server identity is checked before the handshake response is sent. */
export function openVerifiedConnection(options: ConnectionOptions, expected: ExpectedIdentity): { core: CoreConnection; ready: Promise<Connection> } {
  const Verified = verifiedConnectionClass(expected);
  const ConnectionConfig = (mysql as unknown as { ConnectionConfig: new (o: ConnectionOptions) => unknown }).ConnectionConfig;
  const core = new Verified({ config: new ConnectionConfig(options) });
  const ready = new Promise<Connection>((resolve, reject) => {
    core.once('connect', () => resolve(core.promise()));
    core.once('error', reject);
  });
  // a connection the server ends later must not throw an unhandled 'error' event
  core.on('error', () => undefined);
  return { core, ready };
}

/** Whether a connection's TLS identity was verified (for verify's report). */
export function tlsDescription(conn: Connection, target: ConnectorTarget): string | undefined {
  const socket = (conn as unknown as { connection: { stream: unknown } }).connection.stream;
  if (!(socket instanceof TLSSocket) || !verifiedStreams.has(socket)) return undefined;
  const trust = target.options.tlsCa ? 'the configured CA' : "the system's CAs";
  return `${socket.getProtocol()} (${socket.getCipher().name}); certificate verified against ${trust}, names ${target.host}${target.options.tlsCertSha256 ? ', matches the pin' : ''}`;
}

/** A driver error that means the server's identity was not established, as TARGET_IDENTITY_UNVERIFIED; else undefined. */
export function identityRefusal(e: unknown, target: ConnectorTarget): ConnectorError | undefined {
  const where = `${target.host}:${target.port}`;
  const err = e as { code?: unknown; message?: unknown };
  const message = typeof err?.message === 'string' ? err.message : '';
  if (e instanceof IdentityRefused) return new ConnectorError('TARGET_IDENTITY_UNVERIFIED', `${where}: ${message}; no credential was sent`);
  if (err?.code === 'HANDSHAKE_NO_SSL_SUPPORT') {
    return new ConnectorError('TARGET_IDENTITY_UNVERIFIED', `${where} offers no TLS; MySQL credentials are sent only over TLS with a verified server certificate, none was sent`);
  }
  if (err?.code === 'HANDSHAKE_SSL_ERROR') {
    return new ConnectorError('TARGET_IDENTITY_UNVERIFIED', `${where}: the server certificate could not be verified (${message}); set options.tlsCa to the CA that signed it; no credential was sent`);
  }
  return undefined;
}
