import { createHash, randomUUID } from 'node:crypto';
import { SecretBoxService } from '../../src/crypto/secret-box.service';
import { UnitOfWork } from '../../src/database/unit-of-work';
import type { SessionEndReason } from '../../src/gateway/gateway-store';
import { RecorderLimits } from '../../src/gateway/recording/asciicast-recorder';
import { chunkRef, Recorder, RecordingSeal, RecordingService } from '../../src/gateway/recording/recording.service';
import { actingAs } from '../support/http';
import { gatewaySessions } from '../support/recorded-sessions';
import { startTestVault, TestUser, TestVault } from '../support/vault';

/**
 * Session recordings against the real PostgreSQL (issue 16): what the recording service writes decrypts back byte
 * for byte, its hash is the one in the session's closing audit event, a changed byte anywhere is found by verify, and
 * a database that stops taking chunks mid-recording fails the recording (the gateway then ends the session).
 * The gateway's sessions are made here the way the gateway makes them (its store, then the closing audit event).
 */
describe('session recordings (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let auditor: TestUser;
  let operator: TestUser;
  let other: TestUser;
  let recordings: RecordingService;

  beforeAll(async () => {
    vault = await startTestVault();
    auditor = await vault.createUser(['auditor']);
    operator = await vault.createUser(['operator']);
    other = await vault.createUser(['operator']);
    recordings = vault.get(RecordingService);
  });
  afterAll(() => vault.close());

  const targetId = randomUUID();

  const sessions = () => gatewaySessions(vault, { targetId });
  const openSession = (user: TestUser) => sessions().open(user);
  const endSession = (id: string, seal: RecordingSeal | null, reason?: SessionEndReason) => sessions().end(id, seal, reason);

  const start = (id: string, limits: Partial<RecorderLimits> = {}) =>
    recordings.start({ sessionId: id, width: 100, height: 30, term: 'xterm-256color', recordInput: false, startedAt: new Date() }, limits);

  /** A recording of some size with a character split across packets, a resize and markers; answers what it showed. */
  async function record(rec: Recorder): Promise<string> {
    let shown = '';
    rec.marker('shell');
    for (let i = 0; i < 400; i++) {
      const line = `line ${i}: ${'x'.repeat(i % 97)} — ünïcödé €\r\n`;
      const bytes = Buffer.from(line, 'utf8');
      const cut = line.indexOf('€') + 1; // inside the euro sign's three bytes
      rec.output(bytes.subarray(0, Buffer.byteLength(line.slice(0, cut - 1)) + 1));
      rec.output(bytes.subarray(Buffer.byteLength(line.slice(0, cut - 1)) + 1));
      shown += line;
      if (i === 200) rec.resize(132, 43);
    }
    rec.marker('exec: uname -a');
    return shown;
  }

  const download = (id: string, user = auditor) => actingAs(vault, user).get(`/v1/sessions/${id}/recording`).buffer(true);
  const verify = async (id: string) => (await actingAs(vault, auditor).post(`/v1/sessions/${id}/verify`).expect(200)).body;
  const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

  let sealed: { id: string; sha256: string; size: number; shown: string };

  it('a recording written through the service decrypts back byte for byte; its hash is in the closing audit event; verify says ok', async () => {
    const id = await openSession(operator);
    const rec = await start(id, { chunkBytes: 8 * 1024 });
    const shown = await record(rec);
    const seal = await rec.finish();
    await endSession(id, seal);
    sealed = { id, ...seal, shown };

    const chunks = await vault.db.query<{ seq: number; data: Buffer }>('SELECT seq, data FROM session_recording_chunks WHERE session_id = $1 ORDER BY seq', [id]);
    expect(chunks.length).toBeGreaterThan(3);
    for (const c of chunks) expect(c.data.toString('latin1')).not.toContain('line 1'); // encrypted at rest

    const res = await download(id).expect(200);
    expect(res.headers['content-type']).toMatch(/^application\/x-asciicast/);
    expect(res.headers['content-disposition']).toBe(`attachment; filename="session-${id}.cast"`);
    const file = Buffer.from(res.text, 'utf8');
    expect(file.length).toBe(seal.size);
    expect(sha256(file)).toBe(seal.sha256);
    const lines = res.text.trimEnd().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(lines[0]).toMatchObject({ version: 2, width: 100, height: 30, env: { TERM: 'xterm-256color' } });
    const events = lines.slice(1) as Array<[number, string, string]>;
    expect(events.filter((e) => e[1] === 'o').map((e) => e[2]).join('')).toBe(shown);
    expect(events.filter((e) => e[1] !== 'o').map((e) => [e[1], e[2]])).toEqual([
      ['m', 'shell'],
      ['r', '132x43'],
      ['m', 'exec: uname -a'],
    ]);
    expect(res.text).not.toContain('\ufffd');

    const read = await vault.db.query<{ actor_id: string; details: Record<string, unknown> }>(
      `SELECT actor_id, details FROM audit_events WHERE type = 'session.recording_read' AND subject_id = $1`,
      [id],
    );
    expect(read).toEqual([{ actor_id: auditor.id, details: expect.objectContaining({ sessionId: id, sha256: seal.sha256, size: seal.size }) }]);

    const v = await verify(id);
    expect(v).toEqual({
      ok: true,
      computedSha256: seal.sha256,
      storedSha256: seal.sha256,
      auditedSha256: seal.sha256,
      computedSize: seal.size,
      auditEventId: expect.any(String),
      problems: [],
    });
    const event = (await actingAs(vault, auditor).get(`/v1/audit-events/${v.auditEventId}`).expect(200)).body;
    expect(event).toMatchObject({ type: 'gateway.session_ended', subjectId: id, details: { recording: { sha256: seal.sha256, size: seal.size } } });
  });

  it('lists and reads sessions: auditors all, operators their own only; recordings only for auditors and admins', async () => {
    const mine = sealed.id;
    const live = await openSession(other);
    const liveRec = await start(live, { flushMs: 10 });
    liveRec.output(Buffer.from('still typing'));
    await new Promise((r) => setTimeout(r, 100));

    const all = (await actingAs(vault, auditor).get(`/v1/sessions?targetId=${targetId}`).expect(200)).body;
    expect(all.items.map((s: { id: string }) => s.id)).toEqual([live, mine]); // newest first
    expect(all.items[1]).toMatchObject({ id: mine, userId: operator.id, live: false, endReason: 'client_closed', recording: { status: 'complete', sha256: sealed.sha256, size: sealed.size } });
    expect(all.items[0]).toMatchObject({ id: live, live: true, endedAt: null, recording: { status: 'recording', sha256: null } });
    expect((await actingAs(vault, auditor).get(`/v1/sessions?targetId=${targetId}&live=true`).expect(200)).body.items.map((s: { id: string }) => s.id)).toEqual([live]);
    expect((await actingAs(vault, auditor).get(`/v1/sessions?userId=${operator.id}`).expect(200)).body.items.map((s: { id: string }) => s.id)).toEqual([mine]);
    const paged = (await actingAs(vault, auditor).get(`/v1/sessions?targetId=${targetId}&limit=1`).expect(200)).body;
    expect(paged.items).toHaveLength(1);
    const next = (await actingAs(vault, auditor).get(`/v1/sessions?targetId=${targetId}&limit=1&cursor=${paged.nextCursor}`).expect(200)).body;
    expect(next.items.map((s: { id: string }) => s.id)).toEqual([mine]);

    expect((await actingAs(vault, operator).get('/v1/sessions').expect(200)).body.items.map((s: { id: string }) => s.id)).toEqual([mine]);
    expect((await actingAs(vault, operator).get(`/v1/sessions?userId=${other.id}`).expect(200)).body.items).toEqual([]);
    await actingAs(vault, operator).get(`/v1/sessions/${mine}`).expect(200);
    expect((await actingAs(vault, operator).get(`/v1/sessions/${live}`).expect(404)).body.code).toBe('NOT_FOUND');
    expect((await download(mine, operator).expect(403)).body.code).toBe('FORBIDDEN');
    expect((await actingAs(vault, operator).post(`/v1/sessions/${mine}/verify`).expect(403)).body.code).toBe('FORBIDDEN');

    // a live session's recording: what is stored so far; verify says it is not sealed
    const partial = await download(live).expect(200);
    expect(partial.text).toContain('still typing');
    const v = await verify(live);
    expect(v.ok).toBe(false);
    expect(v.problems).toEqual(expect.arrayContaining([expect.stringMatching(/no gateway.session_ended audit event/), 'the recording is recording, not complete']));
    await endSession(live, await liveRec.finish());
    expect((await verify(live)).ok).toBe(true);
  });

  it('bad ids and filters are 4xx with a code', async () => {
    expect((await actingAs(vault, auditor).get('/v1/sessions/not-a-uuid').expect(400)).body.code).toBe('VALIDATION_FAILED');
    expect((await actingAs(vault, auditor).get(`/v1/sessions/${randomUUID()}`).expect(404)).body.code).toBe('NOT_FOUND');
    expect((await download(randomUUID()).expect(404)).body.code).toBe('NOT_FOUND');
    expect((await actingAs(vault, auditor).post(`/v1/sessions/${randomUUID()}/verify`).expect(404)).body.code).toBe('NOT_FOUND');
    for (const q of ['live=maybe', 'userId=x', 'limit=0', 'cursor=%00', `cursor=${Buffer.from('["x"]').toString('base64url')}`]) {
      expect((await actingAs(vault, auditor).get(`/v1/sessions?${q}`).expect(400)).body.code).toBe('VALIDATION_FAILED');
    }
  });

  it('one changed byte of a stored chunk (ciphertext) → verify reports it', async () => {
    const { id } = sealed;
    const [{ data }] = await vault.db.query<{ data: Buffer }>('SELECT data FROM session_recording_chunks WHERE session_id = $1 AND seq = 1', [id]);
    const changed = Buffer.from(data);
    changed[changed.length - 20] ^= 0x01;
    await vault.db.query('UPDATE session_recording_chunks SET data = $2 WHERE session_id = $1 AND seq = 1', [id, changed]);
    const v = await verify(id);
    expect(v.ok).toBe(false);
    expect(v.problems).toContain('chunk 1 does not decrypt (changed, moved or from another recording)');
    expect(v.computedSha256).not.toBe(sealed.sha256);
    expect(v.auditedSha256).toBe(sealed.sha256);
    await vault.db.query('UPDATE session_recording_chunks SET data = $2 WHERE session_id = $1 AND seq = 1', [id, data]);
    expect((await verify(id)).ok).toBe(true);
  });

  /** Swaps two chunks of a recording (through a free seq: the key is checked per statement). */
  async function swap(id: string, a: number, b: number) {
    for (const [from, to] of [[a, 1_000_000], [b, a], [1_000_000, b]]) {
      await vault.db.query('UPDATE session_recording_chunks SET seq = $3 WHERE session_id = $1 AND seq = $2', [id, from, to]);
    }
  }

  it('a chunk moved to another place (re-ordered) does not decrypt there', async () => {
    const { id } = sealed;
    await swap(id, 1, 2);
    const v = await verify(id);
    expect(v.ok).toBe(false);
    expect(v.problems).toEqual(expect.arrayContaining([expect.stringMatching(/^chunk 1 does not decrypt/), expect.stringMatching(/^chunk 2 does not decrypt/)]));
    await swap(id, 1, 2);
    expect((await verify(id)).ok).toBe(true);
  });

  it('one changed byte of the plaintext, re-encrypted with the key (and the row fixed to match) → verify reports the hash mismatch', async () => {
    const { id } = sealed;
    const box = vault.get(SecretBoxService);
    const [{ data }] = await vault.db.query<{ data: Buffer }>('SELECT data FROM session_recording_chunks WHERE session_id = $1 AND seq = 2', [id]);
    const text = box.decrypt(chunkRef(id, 2), data);
    const at = text.indexOf('line ');
    const forged = text.slice(0, at) + 'LINE ' + text.slice(at + 5); // same length, one byte different
    expect(Buffer.byteLength(forged)).toBe(Buffer.byteLength(text));
    await vault.db.query('UPDATE session_recording_chunks SET data = $2 WHERE session_id = $1 AND seq = 2', [id, box.encrypt(chunkRef(id, 2), forged)]);
    // an insider with the key would fix the row's hash too: only the audit chain still says what was recorded
    let all = '';
    for await (const t of recordings.plaintext(id)) all += t;
    await vault.db.query('UPDATE session_recordings SET sha256 = $2 WHERE session_id = $1', [id, sha256(all)]);

    const v = await verify(id);
    expect(v.ok).toBe(false);
    expect(v.computedSha256).toBe(sha256(all));
    expect(v.storedSha256).toBe(sha256(all));
    expect(v.auditedSha256).toBe(sealed.sha256);
    expect(v.problems).toEqual(['the stored recording does not hash to the SHA-256 in the audit event']);
    expect(all).toContain('LINE ');
  });

  it('the audit event changed to match the forged recording → verify reports the event (its MAC), not ok', async () => {
    const { id } = sealed;
    let all = '';
    for await (const t of recordings.plaintext(id)) all += t;
    await vault.db.query(
      `UPDATE audit_events SET details = jsonb_set(details, '{recording,sha256}', to_jsonb($2::text)) WHERE type = 'gateway.session_ended' AND subject_id = $1`,
      [id, sha256(all)],
    );
    const v = await verify(id);
    expect(v.ok).toBe(false);
    expect(v.auditedSha256).toBe(sha256(all));
    expect(v.problems).toEqual([expect.stringMatching(/^audit event \d+ does not match its MAC \(edited\)$/)]);
  });

  it("a lost instance's recording is abandoned: marked failed, what was written still readable", async () => {
    const id = await openSession(operator);
    const rec = await start(id, { flushMs: 10 });
    rec.output(Buffer.from('written before the instance died'));
    await new Promise((r) => setTimeout(r, 80));
    await vault.get(UnitOfWork).run(({ em }) => recordings.abandon(em, [id]));
    const s = (await actingAs(vault, auditor).get(`/v1/sessions/${id}`).expect(200)).body;
    expect(s.recording).toMatchObject({ status: 'failed', failure: 'the instance recording the session was lost before it ended' });
    expect((await download(id).expect(200)).text).toContain('written before the instance died');
    // the recorder of a lost instance would not run on; if it did, its next chunk is refused (not recording any more)
    const failed = new Promise<Error>((r) => rec.onFailure(r));
    rec.output(Buffer.from('too late'));
    expect((await failed).message).toMatch(/could not be written/);
  });

  it('a recording for a session that does not exist cannot start (the gateway refuses the connection)', async () => {
    await expect(start(randomUUID())).rejects.toThrow();
  });

  it('the database refusing chunks mid-recording fails the recording: onFailure fires, finish rejects, the row says failed', async () => {
    const id = await openSession(operator);
    const rec = await start(id, { chunkBytes: 1024, flushMs: 20, attempts: 2 });
    const failed = new Promise<Error>((resolve) => rec.onFailure(resolve));
    rec.output(Buffer.from('before the failure\r\n'.repeat(100)));
    await new Promise((r) => setTimeout(r, 100));
    expect((await vault.db.query('SELECT count(*)::int AS n FROM session_recording_chunks WHERE session_id = $1', [id]))[0].n).toBeGreaterThan(0);
    // the store stops accepting chunks (as a full disk or a broken table would)
    await vault.db.query('ALTER TABLE session_recording_chunks ADD CONSTRAINT recordings_test_refuse CHECK (false) NOT VALID');
    try {
      rec.output(Buffer.from('after the failure\r\n'.repeat(100)));
      const err = await failed;
      expect(err.message).toMatch(/^chunk \d+ could not be written: QueryFailedError 23514$/);
      await expect(rec.finish()).rejects.toThrow(/could not be written/);
    } finally {
      await vault.db.query('ALTER TABLE session_recording_chunks DROP CONSTRAINT recordings_test_refuse');
    }
    await endSession(id, null, 'recording_failed');
    const metrics = (await vault.http().get('/metrics').expect(200)).text;
    expect(metrics).toMatch(/^vault_session_recordings_total\{outcome="failed"\} [1-9]/m);
    expect(metrics).toMatch(/^vault_session_recordings_total\{outcome="complete"\} [1-9]/m);
    expect(metrics).toMatch(/^vault_session_recording_bytes_total [1-9]/m);
    const s = (await actingAs(vault, auditor).get(`/v1/sessions/${id}`).expect(200)).body;
    expect(s).toMatchObject({ endReason: 'recording_failed', recording: { status: 'failed', failure: expect.stringMatching(/could not be written/), sha256: null } });
    const v = await verify(id);
    expect(v.ok).toBe(false);
    expect(v.problems).toEqual(expect.arrayContaining(['the gateway.session_ended audit event carries no recording hash', 'the recording is failed, not complete']));
  });
});
