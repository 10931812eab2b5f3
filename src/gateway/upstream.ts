import { Client } from 'ssh2';
import { keyFingerprint } from './tickets';

/** Where the gateway logs in for a session, and with what; the password is held in a private field only. */
export class UpstreamLogin {
  readonly #password: string;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly username: string,
    password: string,
    /** The target's pinned host key (OpenSSH SHA256, no prefix); undefined: not pinned, nothing is sent. */
    readonly hostKeySha256: string | undefined,
  ) {
    this.#password = password;
  }

  /** @internal for connectUpstream only */
  secret(): string {
    return this.#password;
  }

  toJSON(): { host: string; port: number; username: string } {
    return { host: this.host, port: this.port, username: this.username };
  }
}

export type UpstreamFailure = 'host_key_mismatch' | 'host_key_unpinned' | 'auth_failed' | 'unreachable';

/**
 * Whether ssh2 runs its ciphers and MACs in its native binding (OpenSSL, one call per packet), which its install script
 * builds (package.json allowScripts). Without it the gateway still works, at about 1.6x the CPU per byte relayed.
 */
export function sshNativeCrypto(): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- ssh2 ships no types for this internal module
  return (require('ssh2/lib/protocol/crypto') as { bindingAvailable: boolean }).bindingAvailable;
}

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamFailure,
    /** What the server presented (host key problems), for the audit event. */
    readonly presentedSha256?: string,
  ) {
    super(`upstream: ${kind}`);
  }
}

/**
 * Opens the one upstream connection of a gateway session. The host key is checked against the pin in key exchange,
 * before ssh2 sends any authentication request: a mismatch (or no pin) drops the connection with nothing sent
 * (INVARIANT 19). Password authentication (keyboard-interactive answered with the same password for PAM servers).
 */
export function connectUpstream(login: UpstreamLogin, timeoutMs = 15_000): Promise<Client> {
  return new Promise((resolve, reject) => {
    const conn = new Client();
    let refused: UpstreamError | undefined;
    let settled = false;
    const fail = (e: UpstreamError) => {
      if (settled) return;
      settled = true;
      conn.end();
      reject(e);
    };
    conn.on('ready', () => {
      if (settled) return conn.end();
      settled = true;
      conn.setNoDelay(true); // as OpenSSH for interactive sessions: no Nagle delay on small packets
      resolve(conn);
    });
    conn.on('error', (e: Error & { level?: string }) => fail(refused ?? new UpstreamError(e.level === 'client-authentication' ? 'auth_failed' : 'unreachable')));
    conn.on('close', () => fail(refused ?? new UpstreamError('unreachable')));
    conn.on('keyboard-interactive', (_name, _instructions, _lang, prompts, finish) => finish(prompts.map(() => login.secret())));
    conn.connect({
      host: login.host,
      port: login.port,
      username: login.username,
      password: login.secret(),
      tryKeyboard: true,
      readyTimeout: timeoutMs,
      keepaliveInterval: 30_000,
      hostVerifier: (key: Buffer) => {
        const presented = keyFingerprint(key);
        if (!login.hostKeySha256) refused = new UpstreamError('host_key_unpinned', presented);
        else if (login.hostKeySha256 !== presented) refused = new UpstreamError('host_key_mismatch', presented);
        return refused === undefined;
      },
    });
  });
}
