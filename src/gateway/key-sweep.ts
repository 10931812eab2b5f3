import type { Client, SFTPWrapper } from 'ssh2';

/** The account's own authorized_keys files, relative to its home (where the sftp subsystem starts). */
const KEY_FILES = ['.ssh/authorized_keys', '.ssh/authorized_keys2'] as const;

/**
 * Brokered only means the account is reached through the gateway and nothing else: a key the user plants in their
 * own `authorized_keys` through a session (`echo … >> ~/.ssh/authorized_keys`) would let them log in directly once
 * the checkout ended, unrecorded. So for a brokered-only account the gateway removes the account's own
 * authorized_keys files when a session starts and when it ends (on a fresh connection if the user killed theirs).
 *
 * It goes through the sftp subsystem, not a shell command: a shell started for the account reads the account's own
 * rc files (bash sources ~/.bashrc for sshd commands), which the user controls; OpenSSH's internal-sftp runs no shell.
 * This is a second line only: it runs as the account, so it cannot outrun a process of the account's that re-plants
 * the key, and an external sftp-server is again started through the user's shell. The guarantee is the target's
 * sshd reading keys from root-owned files only (`AuthorizedKeysFile /etc/ssh/authorized_keys/%u`, README).
 */
export function sweepAuthorizedKeys(conn: Client, timeoutMs = 5000): Promise<string[]> {
  return new Promise((resolve) => {
    const removed: string[] = [];
    let done = false;
    let sftp: SFTPWrapper | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sftp?.end();
      resolve(removed);
    };
    const timer = setTimeout(finish, timeoutMs);
    timer.unref();
    const unlink = (s: SFTPWrapper, file: string): Promise<void> =>
      new Promise((next) =>
        s.lstat(file, (missing) => {
          if (missing) return next();
          s.unlink(file, (err) => {
            if (!err) {
              removed.push(file);
              return next();
            }
            // the user made ~/.ssh read-only: it is theirs, so the account may make it writable again
            s.chmod('.ssh', 0o700, () => s.unlink(file, (again) => (again ? next() : (removed.push(file), next()))));
          });
        }),
      );
    try {
      conn.sftp((err, s) => {
        if (err) return finish();
        sftp = s;
        s.on('error', () => undefined);
        void KEY_FILES.reduce((p, f) => p.then(() => unlink(s, f)), Promise.resolve()).then(finish);
      });
    } catch {
      finish(); // the connection is gone
    }
  });
}
