import { Capability, VerifyResult } from '../connector.interface';
import { AdminShell } from './ssh-session';

/**
 * What verify probes on an SSH target, without changing anything (stable codes; README "Least-privilege
 * administrators"):
 * - SSH_PRIVILEGE: the admin is root, or sudo runs for it non-interactively (NOPASSWD, or with its stored password).
 * - SSH_USER_MANAGEMENT: useradd, usermod, userdel and chpasswd are installed and (through sudo) allowed.
 * - SSH_PROCESS_VIEW: `ps` is installed and the admin sees every user's processes (/proc not mounted hidepid).
 * - SSH_KILL: `kill` (the program, /usr/bin/kill) is installed and (through sudo) allowed.
 * With sudo, "allowed" is asked with `sudo -l <full path>`, which runs nothing.
 */
export const USER_TOOLS = ['useradd', 'usermod', 'userdel', 'chpasswd'] as const;
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
  const grantLine = (p: string[]) => `${adminUsername} ALL=(root) NOPASSWD: ${p.join(', ')}`;

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
  const procOptions = field('proc');
  const hidepid = /(?:^|,)hidepid=([^,]+)/.exec(procOptions)?.[1];
  const hideGid = /(?:^|,)gid=(\d+)/.exec(procOptions)?.[1];
  const hidden = shell.privilege !== 'root' && hidepid !== undefined && !['0', 'off'].includes(hidepid) && !(hideGid && field('groups').split(/\s+/).includes(hideGid));
  const processView: Capability = !paths.get('ps')
    ? { code: 'SSH_PROCESS_VIEW', ok: false, message: 'ps is not installed (package procps): the admin cannot list the sessions to end' }
    : hidden
      ? { code: 'SSH_PROCESS_VIEW', ok: false, message: `/proc is mounted with hidepid=${hidepid}: the admin cannot see other users' processes; mount /proc without hidepid, or with gid= a group the admin is in` }
      : { code: 'SSH_PROCESS_VIEW', ok: true, message: "the admin sees every user's processes (ps, /proc)" };

  return { serverVersion: field('uname') || undefined, privilege, capabilities: [privilegeCap, userManagement, processView, kill] };
}
