import { randomBytes } from 'node:crypto';
import { ChainHead, ChainVerifier, chainLink, eventMac, GENESIS_HASH, headMac, StoredAuditEvent } from './audit-chain';

/** Builds a sealed chain exactly as the writer and the sealer do. */
function buildChain(key: Buffer, n: number): { events: StoredAuditEvent[]; head: ChainHead } {
  let hash: Buffer = GENESIS_HASH;
  const events: StoredAuditEvent[] = [];
  for (let i = 1; i <= n; i++) {
    const content = {
      id: String(i),
      at: new Date(Date.UTC(2026, 10, 22, 8, 0, i)),
      type: 'target.created',
      actorId: 'a1',
      subjectType: 'target',
      subjectId: `t${i}`,
      outcome: 'success',
      details: { name: `n${i}`, nested: { b: 2, a: 1 } },
    };
    const mac = eventMac(key, content);
    hash = chainLink(key, hash, BigInt(i), mac);
    events.push({ ...content, mac, seq: String(i), chainHash: hash });
  }
  return { events, head: { seq: String(n), hash, mac: headMac(key, BigInt(n), hash) } };
}

function verify(key: Buffer, events: StoredAuditEvent[], head: ChainHead | null, unsealed: StoredAuditEvent[] = []) {
  const v = new ChainVerifier(key);
  [...events].sort((a, b) => Number(a.seq) - Number(b.seq)).forEach((e) => v.pushSealed(e));
  unsealed.forEach((e) => v.pushUnsealed(e));
  return v.finish(head);
}

describe('audit chain (INVARIANT 15)', () => {
  const key = randomBytes(32);

  it('accepts an untouched chain and reports its head', () => {
    const { events, head } = buildChain(key, 5);
    expect(verify(key, events, head)).toEqual({ ok: true, count: 5, headSeq: '5', headHash: head.hash.toString('hex') });
  });

  it('accepts an empty log', () => {
    expect(verify(key, [], null)).toMatchObject({ ok: true, count: 0 });
  });

  it('is independent of key order in details (canonical form)', () => {
    const { events, head } = buildChain(key, 2);
    events[1] = { ...events[1], details: { nested: { a: 1, b: 2 }, name: 'n2' } };
    expect(verify(key, events, head).ok).toBe(true);
  });

  it('detects an edited event', () => {
    const { events, head } = buildChain(key, 5);
    events[2] = { ...events[2], details: { ...events[2].details, name: 'changed' } };
    expect(verify(key, events, head)).toMatchObject({ ok: false, firstInvalidId: '3' });
  });

  it('detects an edited outcome or actor', () => {
    const { events, head } = buildChain(key, 3);
    events[1] = { ...events[1], outcome: 'failure' };
    expect(verify(key, events, head)).toMatchObject({ ok: false, firstInvalidId: '2' });
  });

  it('detects a deleted event in the middle', () => {
    const { events, head } = buildChain(key, 5);
    events.splice(1, 1);
    expect(verify(key, events, head)).toMatchObject({ ok: false, firstInvalidId: '3' });
  });

  it('detects a deleted event renumbered to close the gap', () => {
    const { events, head } = buildChain(key, 5);
    events.splice(1, 1);
    events.slice(1).forEach((e) => (e.seq = String(Number(e.seq) - 1)));
    expect(verify(key, events, head)).toMatchObject({ ok: false, firstInvalidId: '3' });
  });

  it('detects deletion of the newest events (tail truncation)', () => {
    const { events, head } = buildChain(key, 5);
    expect(verify(key, events.slice(0, 3), head)).toMatchObject({ ok: false, firstInvalidId: null });
  });

  it('detects two events swapped in order', () => {
    const { events, head } = buildChain(key, 5);
    [events[1].seq, events[2].seq] = [events[2].seq, events[1].seq];
    expect(verify(key, events, head)).toMatchObject({ ok: false, firstInvalidId: '3' });
  });

  it('detects a forged event inserted into the chain', () => {
    const { events, head } = buildChain(key, 4);
    const forged: StoredAuditEvent = { ...events[1], id: '99', seq: '3', mac: randomBytes(32), chainHash: randomBytes(32) };
    const shifted = events.map((e) => (Number(e.seq) >= 3 ? { ...e, seq: String(Number(e.seq) + 1) } : e));
    expect(verify(key, [...shifted, forged], head)).toMatchObject({ ok: false, firstInvalidId: '99' });
  });

  it('detects an event forged with a MAC under another key', () => {
    const { events, head } = buildChain(key, 2);
    const other = buildChain(randomBytes(32), 3);
    expect(verify(key, [...events, other.events[2]], head)).toMatchObject({ ok: false, firstInvalidId: '3' });
  });

  it('detects a forged unsealed event and an edited unsealed event', () => {
    const { events, head } = buildChain(key, 2);
    const content = { id: '3', at: new Date(), type: 'x', actorId: null, subjectType: 's', subjectId: null, outcome: 'success', details: {} };
    const good: StoredAuditEvent = { ...content, mac: eventMac(key, content), seq: null, chainHash: null };
    expect(verify(key, events, head, [good]).ok).toBe(true);
    expect(verify(key, events, head, [{ ...good, type: 'y' }])).toMatchObject({ ok: false, firstInvalidId: '3' });
    expect(verify(key, events, head, [{ ...good, mac: randomBytes(32) }])).toMatchObject({ ok: false, firstInvalidId: '3' });
  });

  it('detects a tampered or missing head', () => {
    const { events, head } = buildChain(key, 3);
    expect(verify(key, events, { ...head, seq: '2' }).ok).toBe(false);
    expect(verify(key, events, null).ok).toBe(false);
  });
});
