import { utils } from 'ssh2';
import type { SecretBoxService } from '../crypto/secret-box.service';
import type { GatewayStore } from './gateway-store';
import { newEd25519Pair } from '../common/ssh-keys';
import { loadOrCreateHostKey, newHostKeyPair } from './host-key';

/** A pair from ssh2's generator whose public key lost its leading zero byte (about one in 200): neither half parses. */
function brokenPair(): { public: string; private: string } {
  for (;;) {
    const p = utils.generateKeyPairSync('ed25519');
    if (utils.parseKey(p.public.trim()) instanceof Error) return { public: p.public.trim(), private: p.private };
  }
}

/** The store's host key row in memory, and a secret box that only tags the text (what is stored is not the point here). */
function fakes(row: { publicKey: string; privateKey: Buffer } | null) {
  const state = { row };
  const store = {
    hostKey: async () => state.row,
    insertHostKey: async (_q: unknown, publicKey: string, privateKey: Buffer) => void (state.row ??= { publicKey, privateKey }),
    replaceBrokenHostKey: async (_q: unknown, broken: string, publicKey: string, privateKey: Buffer) => {
      if (state.row?.publicKey === broken) state.row = { publicKey, privateKey };
    },
  } as unknown as GatewayStore;
  const secrets = { encrypt: (_r: unknown, s: string) => Buffer.from(s), decrypt: (_r: unknown, b: Buffer) => b.toString() } as unknown as SecretBoxService;
  return { state, store, secrets };
}

describe('gateway host key', () => {
  it("newHostKeyPair never returns one of ssh2's malformed ed25519 pairs", () => {
    const bad = brokenPair();
    const good = newEd25519Pair(utils);
    let calls = 0;
    const pair = newHostKeyPair(() => (calls++ < 2 ? bad : good));
    expect(calls).toBe(3);
    expect(pair.public).toBe(good.public.trim());
    expect(utils.parseKey(pair.public)).not.toBeInstanceOf(Error);
  });

  it('a stored malformed key (it could never serve a client) is replaced at start; a well-formed one is kept', async () => {
    const bad = brokenPair();
    const { state, store, secrets } = fakes({ publicKey: bad.public, privateKey: Buffer.from(bad.private) });
    const key = await loadOrCreateHostKey({ query: async () => [] }, store, secrets);
    expect(key.publicKey).not.toBe(bad.public);
    expect(state.row!.publicKey).toBe(key.publicKey);
    const again = await loadOrCreateHostKey({ query: async () => [] }, store, secrets);
    expect(again.sha256).toBe(key.sha256);
  });
});
