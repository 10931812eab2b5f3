import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, constants, fstatSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CliError, EXIT } from './errors';

/** What `vaultctl login` keeps: the token is only ever sent to the vault it came from. */
export interface Session {
  url: string;
  token: string;
  expiresAt: string;
  username: string;
}

/** Settings that are not secret (the vault address last logged in to). */
export interface Settings {
  url?: string;
}

/** `$VAULT_CONFIG_DIR`, else `$XDG_CONFIG_HOME/vaultctl`, else `~/.config/vaultctl`. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VAULT_CONFIG_DIR) return env.VAULT_CONFIG_DIR;
  if (env.XDG_CONFIG_HOME) return join(env.XDG_CONFIG_HOME, 'vaultctl');
  return join(homedir(), '.config', 'vaultctl');
}

export const tokenPath = (dir: string) => join(dir, 'token.json');
const settingsPath = (dir: string) => join(dir, 'config.json');

const uid = () => (typeof process.getuid === 'function' ? process.getuid() : undefined);
const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, '0');

/** Creates the folder 0700 when missing; refuses one that others may write to (they could swap the token file). */
function ensureDir(dir: string): void {
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (created !== undefined) chmodSync(dir, 0o700); // the umask may have taken bits away, never add any: be exact
  const st = statSync(dir);
  const me = uid();
  if (me !== undefined && st.uid !== me) throw new CliError(`the config folder ${dir} belongs to another user; set VAULT_CONFIG_DIR to a folder of yours`, EXIT.USAGE, 'UNSAFE_CONFIG');
  if (st.mode & 0o022) {
    throw new CliError(`the config folder ${dir} is writable by group or others (mode ${octal(st.mode)}); run \`chmod 700 ${dir}\``, EXIT.USAGE, 'UNSAFE_CONFIG');
  }
}

/** Written next to the final file (mode 0600 from the start, exclusive create) and renamed over it. */
function writePrivate(dir: string, path: string, text: string): void {
  ensureDir(dir);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0), 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Reads a private file: no symlink, owned by this user, no access for group or others. Missing: undefined.
 * A token file that others can read is refused (exit 3): the token may have been copied, log in again.
 */
function readPrivate(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new CliError(`refusing to read ${path}: it is a symbolic link`, EXIT.UNAUTHENTICATED, 'UNSAFE_TOKEN_FILE');
    throw new CliError(`cannot read ${path}: ${code ?? (e as Error).message}`, EXIT.UNAUTHENTICATED, 'UNSAFE_TOKEN_FILE');
  }
  try {
    const st = fstatSync(fd);
    const me = uid();
    if (!st.isFile()) throw new CliError(`refusing to read ${path}: not a regular file`, EXIT.UNAUTHENTICATED, 'UNSAFE_TOKEN_FILE');
    if (me !== undefined && st.uid !== me) throw new CliError(`refusing to read ${path}: it belongs to another user`, EXIT.UNAUTHENTICATED, 'UNSAFE_TOKEN_FILE');
    if (st.mode & 0o077) {
      throw new CliError(
        `refusing to use ${path}: group or others can access it (mode ${octal(st.mode)}), so the token may have been copied; ` +
          `run \`vaultctl logout\` and \`vaultctl login\` again (the new file is written with mode 0600)`,
        EXIT.UNAUTHENTICATED,
        'UNSAFE_TOKEN_FILE',
      );
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

export function readSession(dir: string): Session | undefined {
  const text = readPrivate(tokenPath(dir));
  if (text === undefined) return undefined;
  try {
    const s = JSON.parse(text) as Session;
    if (typeof s.token === 'string' && typeof s.url === 'string') return s;
  } catch {
    /* fall through */
  }
  throw new CliError(`${tokenPath(dir)} is not a vaultctl token file; run \`vaultctl login\``, EXIT.UNAUTHENTICATED, 'BAD_TOKEN_FILE');
}

export function writeSession(dir: string, session: Session): void {
  writePrivate(dir, tokenPath(dir), JSON.stringify(session, null, 2) + '\n');
}

/** True when there was one to remove. */
export function removeSession(dir: string): boolean {
  try {
    unlinkSync(tokenPath(dir));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export function readSettings(dir: string): Settings {
  try {
    return JSON.parse(readFileSync(settingsPath(dir), 'utf8')) as Settings;
  } catch {
    return {};
  }
}

export function writeSettings(dir: string, settings: Settings): void {
  writePrivate(dir, settingsPath(dir), JSON.stringify(settings, null, 2) + '\n');
}
