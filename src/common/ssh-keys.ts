import type { ParsedKey, utils as Ssh2Utils } from 'ssh2';

type SshUtils = typeof Ssh2Utils;

/**
 * A new ed25519 key pair in OpenSSH format. ssh2 1.17's generateKeyPairSync('ed25519') drops a leading zero byte of
 * the public key about once in 200 keys, and neither half of such a pair parses (a gateway host key that could never
 * start, a `vaultctl ssh` session key the vault refuses): a pair is generated again until both halves parse and name
 * the same public key. `u` is ssh2's utils. (vaultctl, built on its own, has its own loop: src/vaultctl/commands/ssh.ts.)
 */
export function newEd25519Pair(
  u: SshUtils,
  comment?: string,
  generate: () => { public: string; private: string } = () => u.generateKeyPairSync('ed25519', comment === undefined ? undefined : { comment }),
): { public: string; private: string } {
  for (let i = 0; i < 20; i++) {
    const pair = generate();
    if (wellFormedPair(u, pair.public.trim(), pair.private)) return { public: pair.public.trim(), private: pair.private };
  }
  throw new Error('no well-formed ed25519 key could be generated');
}

/** The parsed public key when both halves of a pair parse and agree, else null. */
export function wellFormedPair(u: SshUtils, publicKey: string, privateKey: string): ParsedKey | null {
  const pub = u.parseKey(publicKey);
  const priv = u.parseKey(privateKey);
  if (pub instanceof Error || Array.isArray(pub) || priv instanceof Error || Array.isArray(priv)) return null;
  return pub.getPublicSSH().equals(priv.getPublicSSH()) ? pub : null;
}
