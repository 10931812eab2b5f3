import type { Client } from 'ssh2';

/**
 * Brokered only means the account is reached through the gateway and nothing else: a key the user plants in their
 * own `authorized_keys` through a session (`echo … >> ~/.ssh/authorized_keys`) would let them log in directly once
 * the checkout ended, unrecorded. So for a brokered-only account the gateway removes the account's own
 * authorized_keys files, as the account (its own files, no privilege), when a session starts and before it closes
 * the upstream connection at the end. The planting itself stays in the recording. Targets should still keep
 * AuthorizedKeysFile outside users' homes (README, "Brokered only").
 */
const SWEEP = [
  'for f in "$HOME/.ssh/authorized_keys" "$HOME/.ssh/authorized_keys2"; do',
  '  if [ -e "$f" ] || [ -L "$f" ]; then chmod u+w "$HOME/.ssh" 2>/dev/null; rm -f -- "$f" && printf "%s\\n" "${f#$HOME/}"; fi',
  'done',
].join('\n');

/** Runs the sweep on the session's upstream connection; resolves to the files it removed (empty: none, or it could not run). */
export function sweepAuthorizedKeys(upstream: Client, timeoutMs = 5000): Promise<string[]> {
  return new Promise((resolve) => {
    let out = '';
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(out.split('\n').filter((l) => l === '.ssh/authorized_keys' || l === '.ssh/authorized_keys2'));
    };
    const timer = setTimeout(finish, timeoutMs);
    timer.unref();
    try {
      upstream.exec(`/bin/sh -c '${SWEEP.replace(/'/g, `'\\''`)}'`, (err, stream) => {
        if (err) return finish();
        stream.on('error', () => undefined);
        stream.on('data', (d: Buffer) => (out += d.toString()));
        stream.stderr.on('data', () => undefined);
        stream.on('close', finish);
      });
    } catch {
      finish(); // the upstream connection is gone
    }
  });
}
