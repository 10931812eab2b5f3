import { Capability, VerifyResult } from '../connector.interface';
import { isListenerTitle } from './ssh-processes';
import { scanProcesses } from './ssh-remote';
import { AdminShell, shQuote } from './ssh-session';

/**
 * What verify probes on an SSH target, without changing anything (stable codes; README "Least-privilege
 * administrators"):
 * - SSH_PRIVILEGE: the admin is root, or sudo runs for it non-interactively (NOPASSWD, or with its stored password).
 * - SSH_USER_MANAGEMENT: useradd, usermod, userdel and chpasswd are installed and (through sudo) allowed.
 * - SSH_PROCESS_VIEW: `ps` is installed and the admin sees every user's processes (/proc not mounted hidepid).
 * - SSH_KILL: `kill` (the program, /usr/bin/kill) is installed and (through sudo) allowed.
 * - SSH_KILL_AS_USER: sudo also runs `kill` as any user (`(ALL)` run-as list): processes of a user are signalled as
 *   that user, so a pid reused by someone else's process meanwhile is never hit (without it: as root, after a check).
 * - SSH_KEYS_LOCKED: the AuthorizedKeysFile of the sshd serving the vault is outside users' homes (absolute, no %h),
 *   so an account cannot add a key of its own that outlives a checkout (its password is rotated at check-in).
 * With sudo, "allowed" is asked with `sudo -l <full path>`, which runs nothing.
 */
const USER_TOOLS = ['useradd', 'usermod', 'userdel', 'chpasswd'] as const;
const TOOLS = [...USER_TOOLS, 'kill', 'ps'] as const;
type Tool = (typeof TOOLS)[number];

/** One script: where each tool is (first in the sudo secure_path order), the /proc mount options and the admin's groups. */
const PROBE_SCRIPT = [
  `for t in ${TOOLS.join(' ')}; do`,
  '  p=-; for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do if [ -x "$d/$t" ]; then p="$d/$t"; break; fi; done',
  '  echo "tool $t $p"',
  'done',
  `echo "proc $(awk '$2 == "/proc" && $3 == "proc" { print $4; exit }' /proc/mounts 2>/dev/null)"`,
  'echo "groups $(id -G)"',
  'echo "uname $(uname -sr)"',
].join('\n');

export async function probeCapabilities(shell: AdminShell, adminUsername: string): Promise<Pick<VerifyResult, 'serverVersion' | 'privilege' | 'capabilities'>> {
  const out = (await shell.run(PROBE_SCRIPT)).stdout;
  const field = (key: string) => out.split('\n').find((l) => l.startsWith(`${key} `))?.slice(key.length + 1).trim() ?? '';
  const paths = new Map<Tool, string | undefined>();
  for (const t of TOOLS) {
    const p = new RegExp(`^tool ${t} (.*)$`, 'm').exec(out)?.[1]?.trim();
    paths.set(t, p && p !== '-' ? p : undefined);
  }
  // kill with the run-as list (ALL): see SSH_KILL_AS_USER
  const grantLine = (p: string[]) => {
    const asRoot = p.filter((x) => !x.endsWith('/kill'));
    const kill = p.filter((x) => x.endsWith('/kill'));
    return `${adminUsername} ALL=${[asRoot.length ? `(root) NOPASSWD: ${asRoot.join(', ')}` : '', kill.length ? `(ALL) NOPASSWD: ${kill.join(', ')}` : ''].filter(Boolean).join(', ')}`;
  };

  // privilege: how the connector will run privileged commands; then which tools sudo allows (`sudo -l <path>`)
  const present = [...paths.entries()].filter(([t, p]) => t !== 'ps' && p).map(([, p]) => p!);
  const allowed = new Map<string, boolean>();
  let privilege: VerifyResult['privilege'];
  let privilegeCap: Capability;
  if (shell.privilege === 'root') {
    privilege = 'root';
    privilegeCap = { code: 'SSH_PRIVILEGE', ok: true, message: 'the admin is root' };
    for (const p of present) allowed.set(p, true);
  } else if ((await shell.sudo('', '', '-l')).code === 0) {
    for (const p of present) allowed.set(p, await shell.allowed(p));
    // with a stored password sudo may be asking for it; without one, only NOPASSWD rules can have worked
    const askless = shell.hasPassword ? await Promise.all(present.filter((p) => allowed.get(p)).map((p) => shell.allowed(p, true))) : [];
    privilege = askless.every(Boolean) ? 'sudo-nopasswd' : 'sudo-password';
    privilegeCap = {
      code: 'SSH_PRIVILEGE',
      ok: true,
      message: privilege === 'sudo-nopasswd' ? 'the admin runs commands as root through sudo without a password (NOPASSWD)' : 'the admin runs commands as root through sudo with its stored password',
    };
  } else {
    privilegeCap = {
      code: 'SSH_PRIVILEGE',
      ok: false,
      message: `${adminUsername} is not root and sudo does not run for it non-interactively${shell.hasPassword ? '' : ' (no admin password is stored, so only NOPASSWD rules work)'}: grant it in /etc/sudoers.d/: ${grantLine(present.length ? present : ['/usr/sbin/useradd', '…'])}`,
    };
  }

  const check = (code: string, tools: Tool[], what: string): Capability => {
    const missing = tools.filter((t) => !paths.get(t));
    const found = tools.filter((t) => paths.get(t)).map((t) => paths.get(t)!);
    const refused = privilegeCap.ok ? found.filter((p) => !allowed.get(p)) : [];
    const problems = [
      ...(missing.length ? [`not installed: ${missing.join(', ')}`] : []),
      ...(!privilegeCap.ok ? ['no privilege to run them (see SSH_PRIVILEGE)'] : []),
      ...(refused.length ? [`sudo does not allow ${refused.join(', ')}: add to /etc/sudoers.d/: ${grantLine(refused)}`] : []),
    ];
    return problems.length ? { code, ok: false, message: `${what}: ${problems.join('; ')}` } : { code, ok: true, message: `${what}: ${found.join(', ')}` };
  };

  const userManagement = check('SSH_USER_MANAGEMENT', [...USER_TOOLS], 'creating, changing and removing accounts');
  const kill = check('SSH_KILL', ['kill'], 'ending processes');
  const killPath = paths.get('kill');
  const killAsUser: Capability =
    !killPath || !privilegeCap.ok || !kill.ok
      ? { code: 'SSH_KILL_AS_USER', ok: false, message: 'ending processes as their own user: needs SSH_KILL first' }
      : (await shell.allowed(killPath, false, 65534))
        ? { code: 'SSH_KILL_AS_USER', ok: true, message: `ending processes as their own user (a reused pid is never hit): ${killPath}` }
        : {
            code: 'SSH_KILL_AS_USER',
            ok: false,
            message: `sudo runs ${killPath} only as root: processes are then signalled as root after a last check of their identity; to have the kernel refuse a reused pid, add to /etc/sudoers.d/: ${adminUsername} ALL=(ALL) NOPASSWD: ${killPath}`,
          };
  const procOptions = field('proc');
  const hidepid = /(?:^|,)hidepid=([^,]+)/.exec(procOptions)?.[1];
  const hideGid = /(?:^|,)gid=(\d+)/.exec(procOptions)?.[1];
  const hidden = shell.privilege !== 'root' && hidepid !== undefined && !['0', 'off'].includes(hidepid) && !(hideGid && field('groups').split(/\s+/).includes(hideGid));
  const processView: Capability = !paths.get('ps')
    ? { code: 'SSH_PROCESS_VIEW', ok: false, message: 'ps is not installed (package procps): the admin cannot list the sessions to end' }
    : hidden
      ? { code: 'SSH_PROCESS_VIEW', ok: false, message: `/proc is mounted with hidepid=${hidepid}: the admin cannot see other users' processes; mount /proc without hidepid, or with gid= a group the admin is in` }
      : { code: 'SSH_PROCESS_VIEW', ok: true, message: "the admin sees every user's processes (ps, /proc)" };

  return { serverVersion: field('uname') || undefined, privilege, capabilities: [privilegeCap, userManagement, processView, kill, killAsUser, await keysLocked(shell)] };
}

/** The AuthorizedKeysFile sshd uses when the configuration does not say (OpenSSH default). */
const DEFAULT_AUTHORIZED_KEYS = ['.ssh/authorized_keys', '.ssh/authorized_keys2'];

/**
 * SSH_KEYS_LOCKED: reads (as the admin, unprivileged) the configuration of the sshd listener that serves the vault's
 * own session (its `-f`, default /etc/ssh/sshd_config, with its Include files) and tells whether AuthorizedKeysFile lets
 * a user add keys of its own: any relative path (relative to the home) or one with %h or ~ does.
 */
async function keysLocked(shell: AdminShell): Promise<Capability> {
  const code = 'SSH_KEYS_LOCKED';
  const table = await scanProcesses(shell);
  let listener: number | undefined;
  for (let p = table.procs.get(table.self), hops = 0; p && hops < 64; p = table.procs.get(p.ppid), hops++) {
    if (p.ruid === 0 && p.euid === 0 && isListenerTitle(p.args)) {
      listener = p.pid;
      break;
    }
  }
  let file = '/etc/ssh/sshd_config';
  if (listener) {
    const cmd = (await shell.run(`head -c 4096 /proc/${listener}/cmdline | tr '\\000' ' '`)).stdout;
    const f = /(?:^|\s)-f\s*(\/\S+)/.exec(cmd)?.[1];
    if (f) file = f;
  }
  const main = await shell.run(`cat -- ${shQuote(file)}`);
  if (main.code !== 0) return { code, ok: false, message: `the sshd configuration ${file} cannot be read by the admin: whether users can add their own authorized keys is unknown` };
  const lines: string[] = [];
  for (const line of main.stdout.split('\n')) {
    const inc = /^\s*include\s+(.+)$/i.exec(line);
    if (!inc) {
      lines.push(line);
      continue;
    }
    for (const raw of inc[1].trim().split(/\s+/)) {
      const pattern = raw.startsWith('/') ? raw : `/etc/ssh/${raw}`;
      if (!/^[A-Za-z0-9_./*?-]+$/.test(pattern)) return { code, ok: false, message: `the sshd configuration includes ${raw.slice(0, 80)}, which the vault does not read: check AuthorizedKeysFile by hand` };
      const res = await shell.run(`for f in ${pattern}; do [ -f "$f" ] && cat -- "$f" && echo; done; exit 0`);
      lines.push(...res.stdout.split('\n'));
    }
  }
  let value: string[] | undefined;
  let inMatch = false;
  let inMatchSet = false;
  for (const line of lines) {
    const m = /^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$/.exec(line.replace(/#.*$/, ''));
    if (!m) continue;
    const key = m[1].toLowerCase();
    if (key === 'match') inMatch = true;
    else if (key === 'authorizedkeysfile') {
      if (inMatch) inMatchSet = true;
      else value ??= m[2].split(/\s+/).map((t) => t.replace(/^"|"$/g, ''));
    }
  }
  const files = value ?? DEFAULT_AUTHORIZED_KEYS;
  const writable = files.filter((f) => f.toLowerCase() !== 'none' && (!f.startsWith('/') || /%h|~/.test(f)));
  if (writable.length) {
    return {
      code,
      ok: false,
      message: `sshd (${file}) reads authorized keys from ${writable.join(', ')} in the user's home: a checked-out account can add a key and keep logging in after check-in; set AuthorizedKeysFile to a root-owned path (e.g. /etc/ssh/authorized_keys/%u)`,
    };
  }
  if (inMatchSet) return { code, ok: false, message: `a Match block of ${file} sets AuthorizedKeysFile: check by hand that no user can write it` };
  return { code, ok: true, message: `sshd (${file}) reads authorized keys only from ${files.join(', ')} (outside users' homes)` };
}
