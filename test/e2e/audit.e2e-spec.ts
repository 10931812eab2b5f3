import { randomBytes } from 'node:crypto';
import { AuditSealer, SEAL_LOCK } from '../../src/audit/audit-sealer.service';
import type { AuditEventView } from '../../src/audit/audit.dto';
import { encodeCursor } from '../../src/common/pagination';
import { ClaimedWork } from '../../src/database/claimed-work';
import { accountInput, postgresTarget, secretValue, sshTarget } from '../factories';
import { needsStepUp, withMfa } from '../support/http';
import { ADMIN_PASSWORD, startTestVault, TestVault } from '../support/vault';

type Method = 'get' | 'post' | 'patch' | 'delete';
interface Page {
  items: AuditEventView[];
  nextCursor: string | null;
}

/** Thin helpers around one vault: authenticated calls and reads of the audit log. */
function auditHelpers(vault: TestVault, auth: () => string) {
  /** As the admin; with a fresh step-up code where the route needs one. */
  const call = (method: Method, path: string, body?: object) => {
    const req = vault.http()[method](path).set('Authorization', auth());
    const sent = body ? req.send(body) : req;
    return needsStepUp(method, path) ? withMfa(sent, async () => (await vault.admin()).code()) : sent;
  };
  /** The highest audit event id so far: events written later have a greater id. */
  const mark = async () => {
    const [{ max }] = await vault.db.query<{ max: string | null }>('SELECT max(id)::text AS max FROM audit_events');
    return BigInt(max ?? '0');
  };
  /** Events written after `since`, oldest first, read through the API. */
  const eventsAfter = async (since: bigint): Promise<AuditEventView[]> => {
    const page: Page = (await call('get', '/v1/audit-events?limit=200').expect(200)).body;
    return page.items.filter((e) => BigInt(e.id) > since).reverse();
  };
  const verify = async () => (await call('get', '/v1/audit-events/verify').expect(200)).body;
  return { call, mark, eventsAfter, verify };
}

describe('audit log (e2e, real PostgreSQL)', () => {
  let vault: TestVault;
  let auth: string;
  let adminId: string;
  let h: ReturnType<typeof auditHelpers>;
  /** Every secret sent to this vault: none may ever appear in an audit event. */
  const sent: string[] = [ADMIN_PASSWORD];
  const remember = <T>(secret: T): T => {
    sent.push(String(secret));
    return secret;
  };

  beforeAll(async () => {
    vault = await startTestVault();
    auth = await vault.adminAuth();
    remember(auth.replace(/^Bearer /, ''));
    h = auditHelpers(vault, () => auth);
    adminId = (await h.call('get', '/v1/me').expect(200)).body.id;
  });
  afterAll(() => vault.close());

  describe('events for target and account changes', () => {
    /**
     * Runs one change and expects exactly one event from it, written by the admin, besides the `mfa.verified` of the
     * admin's step-up code (every change here is an admin action that needs one).
     */
    async function expectOneEvent<T>(change: () => Promise<T>, expected: (result: T) => Partial<AuditEventView>): Promise<T> {
      const since = await h.mark();
      const result = await change();
      const all = await h.eventsAfter(since);
      expect(all.filter((e) => e.type === 'mfa.verified').map((e) => [e.actorId, e.outcome])).toEqual([[adminId, 'success']]);
      const events = all.filter((e) => e.type !== 'mfa.verified');
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ actorId: adminId, outcome: 'success', ...expected(result) });
      expect(events[0].at).toEqual(expect.any(String));
      return result;
    }

    it('writes exactly one event of the right type, actor, subject and details for each create, update and delete', async () => {
      const targetInput = postgresTarget({ options: { database: 'app' } });
      remember(targetInput.admin.password);
      const target = await expectOneEvent(
        async () => (await h.call('post', '/v1/targets', targetInput).expect(201)).body,
        (t) => ({
          type: 'target.created',
          subjectType: 'target',
          subjectId: t.id,
          details: {
            name: targetInput.name,
            type: 'postgres',
            host: '127.0.0.1',
            port: 5432,
            adminUsername: 'postgres',
            adminCredentials: ['password'],
            options: { database: 'app' },
          },
        }),
      );

      const newAdminPassword = remember(secretValue('new-admin'));
      await expectOneEvent(
        () => h.call('patch', `/v1/targets/${target.id}`, { host: 'db2.example.com', admin: { username: 'vault_admin', password: newAdminPassword } }).expect(200),
        () => ({
          type: 'target.updated',
          subjectType: 'target',
          subjectId: target.id,
          details: { host: 'db2.example.com', adminUsername: 'vault_admin', adminCredentials: ['password'], adminSecretChanged: true },
        }),
      );

      // a PATCH that changes nothing writes nothing (but the step-up code it carried was used: mfa.verified)
      const before = await h.mark();
      await h.call('patch', `/v1/targets/${target.id}`, {}).expect(200);
      expect((await h.eventsAfter(before)).map((e) => e.type)).toEqual(['mfa.verified']);

      const input = accountInput(target.id, { policy: { approvalsRequired: 1 } });
      remember(input.password);
      const account = await expectOneEvent(
        async () => (await h.call('post', '/v1/accounts', input).expect(201)).body,
        (a) => ({
          type: 'account.created',
          subjectType: 'account',
          subjectId: a.id,
          details: { targetId: target.id, username: input.username, policy: expect.objectContaining({ approvalsRequired: 1 }) },
        }),
      );

      await expectOneEvent(
        () => h.call('patch', `/v1/accounts/${account.id}`, { policy: { checkoutTtlSeconds: 600 } }).expect(200),
        () => ({
          type: 'account.updated',
          subjectType: 'account',
          subjectId: account.id,
          details: {
            before: expect.objectContaining({ checkoutTtlSeconds: 3600 }),
            policy: expect.objectContaining({ checkoutTtlSeconds: 600, approvalsRequired: 1 }),
          },
        }),
      );

      await expectOneEvent(
        () => h.call('delete', `/v1/accounts/${account.id}`).expect(204),
        () => ({ type: 'account.deleted', subjectType: 'account', subjectId: account.id, details: { targetId: target.id, username: input.username } }),
      );

      await expectOneEvent(
        () => h.call('delete', `/v1/targets/${target.id}`).expect(204),
        () => ({ type: 'target.deleted', subjectType: 'target', subjectId: target.id, details: { name: targetInput.name } }),
      );
    });

    it('audits SSH targets with a private key without the key or its passphrase', async () => {
      const privateKey = remember(secretValue('-----BEGIN OPENSSH PRIVATE KEY-----'));
      const passphrase = remember(secretValue('passphrase'));
      const input = sshTarget({ admin: { username: 'root', privateKey, passphrase } });
      const since = await h.mark();
      const target = (await h.call('post', '/v1/targets', input).expect(201)).body;
      const [event] = (await h.eventsAfter(since)).filter((e) => e.type !== 'mfa.verified');
      expect(event).toMatchObject({ type: 'target.created', subjectId: target.id, details: { adminCredentials: ['privateKey'] } });
    });

    it('never puts a password, key or token into any event (API view and stored rows)', async () => {
      const everyEvent = JSON.stringify((await h.call('get', '/v1/audit-events?limit=200').expect(200)).body);
      const rows = JSON.stringify(await vault.db.query('SELECT row_to_json(e)::text AS e FROM audit_events e'));
      expect(sent.length).toBeGreaterThan(5);
      for (const secret of sent) {
        expect(everyEvent).not.toContain(secret);
        expect(rows).not.toContain(secret);
      }
    });
  });

  describe('GET /v1/audit-events', () => {
    /** Follows nextCursor from the first page to the last. */
    async function walk(query: string): Promise<AuditEventView[][]> {
      const pages: AuditEventView[][] = [];
      let cursor: string | null = null;
      do {
        const page: Page = (await h.call('get', `/v1/audit-events?${query}${cursor ? `&cursor=${cursor}` : ''}`).expect(200)).body;
        pages.push(page.items);
        cursor = page.nextCursor;
        expect(pages.length).toBeLessThan(100);
      } while (cursor !== null);
      return pages;
    }

    it('walks keyset pages newest first, without duplicates or gaps, ending with nextCursor null', async () => {
      for (let i = 0; i < 7; i++) {
        const input = postgresTarget();
        remember(input.admin.password);
        await h.call('post', '/v1/targets', input).expect(201);
      }
      const stored = (await vault.db.query<{ id: string }>('SELECT e.id::text AS id FROM audit_events e ORDER BY e.id DESC')).map((r) => r.id);
      expect(stored.length).toBeGreaterThanOrEqual(10);

      const pages = await walk('limit=2');
      pages.slice(0, -1).forEach((p) => expect(p).toHaveLength(2));
      expect(pages[pages.length - 1].length).toBeLessThanOrEqual(2);
      const ids = pages.flat().map((e) => e.id);
      expect(ids).toEqual(stored); // same events, same order: no duplicate, no gap
      const times = pages.flat().map((e) => Date.parse(e.at));
      times.slice(1).forEach((t, i) => expect(t).toBeLessThanOrEqual(times[i]));
      pages.flat().forEach((e) =>
        expect(Object.keys(e).sort()).toEqual(['actorId', 'at', 'details', 'id', 'outcome', 'sealed', 'subjectId', 'subjectType', 'type']),
      );
    });

    it('pages a filtered list the same way', async () => {
      const stored = (
        await vault.db.query<{ id: string }>("SELECT e.id::text AS id FROM audit_events e WHERE e.type = 'target.created' ORDER BY e.id DESC")
      ).map((r) => r.id);
      const pages = await walk('type=target.created&limit=3');
      expect(pages.flat().map((e) => e.id)).toEqual(stored);
      expect(pages.flat().every((e) => e.type === 'target.created')).toBe(true);
    });

    it.each([
      ['not base64url', '!!!'],
      ['base64 of something that is not JSON', Buffer.from('not json').toString('base64url')],
      ['a cursor of the wrong shape', encodeCursor([1])],
      ['a cursor with two keys', encodeCursor(['1', '2'])],
      ['a cursor that is not an id', encodeCursor(['abc'])],
      ['a negative id', encodeCursor(['-1'])],
      ['an id beyond bigint', encodeCursor(['99999999999999999999999'])],
      ['a cursor that is too long', 'A'.repeat(600)],
    ])('refuses %s as cursor with 400 VALIDATION_FAILED', async (_label, cursor) => {
      const res = await h.call('get', `/v1/audit-events?limit=2&cursor=${cursor}`).expect(400);
      expect(res.body).toEqual({ statusCode: 400, code: 'VALIDATION_FAILED', message: expect.any(String) });
    });
  });

  describe('GET /v1/audit-events/verify', () => {
    it('reports an intact log with its count and head hash, having sealed every event', async () => {
      const result = await h.verify();
      const [{ count }] = await vault.db.query<{ count: number }>('SELECT count(*)::int AS count FROM audit_events');
      const [head] = await vault.db.query<{ hash: Buffer; seq: string }>('SELECT hash, seq::text AS seq FROM audit_chain_head WHERE id = 1');
      expect(result).toEqual({ ok: true, count, headSeq: head.seq, headHash: head.hash.toString('hex') });
      expect(result.headHash).toMatch(/^[0-9a-f]{64}$/);
      const [{ unsealed }] = await vault.db.query<{ unsealed: number }>('SELECT count(*)::int AS unsealed FROM audit_events WHERE seq IS NULL');
      expect(unsealed).toBe(0);
      const page: Page = (await h.call('get', '/v1/audit-events?limit=5').expect(200)).body;
      expect(page.items.every((e) => e.sealed)).toBe(true);
    });

    it('answers 401 UNAUTHENTICATED without a valid token', async () => {
      for (const path of ['/v1/audit-events', '/v1/audit-events/verify']) {
        const none = await vault.http().get(path).expect(401);
        expect(none.body).toEqual({ statusCode: 401, code: 'UNAUTHENTICATED', message: expect.any(String) });
        const garbage = await vault.http().get(path).set('Authorization', 'Bearer pvt_not-a-real-token').expect(401);
        expect(garbage.body.code).toBe('UNAUTHENTICATED');
      }
    });

    it('lets an auditor read and verify but not change anything', async () => {
      const auditor = await vault.createUser(['auditor']);
      await vault.http().get('/v1/audit-events?limit=5').set('Authorization', auditor.auth).expect(200);
      expect((await vault.http().get('/v1/audit-events/verify').set('Authorization', auditor.auth).expect(200)).body.ok).toBe(true);
      expect((await vault.http().post('/v1/targets').set('Authorization', auditor.auth).send(postgresTarget()).expect(403)).body.code).toBe('FORBIDDEN');
    });

    it('refuses the audit endpoints to operators, vendors and schedulers with 403 FORBIDDEN', async () => {
      for (const role of ['operator', 'vendor', 'scheduler'] as const) {
        const user = await vault.createUser([role]);
        for (const path of ['/v1/audit-events', '/v1/audit-events/verify']) {
          expect((await vault.http().get(path).set('Authorization', user.auth).expect(403)).body.code).toBe('FORBIDDEN');
        }
      }
    });
  });

  describe('audit write in the same transaction as the change (INVARIANT 14)', () => {
    const failAuditInserts = async () => {
      await vault.db.query(`CREATE OR REPLACE FUNCTION test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit store refuses writes'; END $$`);
      await vault.db.query(
        'CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION test_refuse_audit()',
      );
    };
    const restoreAuditInserts = async () => {
      await vault.db.query('DROP TRIGGER IF EXISTS test_refuse_audit ON audit_events');
      await vault.db.query('DROP FUNCTION IF EXISTS test_refuse_audit()');
    };
    const rowsOf = async () =>
      (
        await vault.db.query<{ targets: string; accounts: string; events: number }>(
          `SELECT (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM targets t) AS targets,
                  (SELECT md5(coalesce(string_agg(a::text, '|' ORDER BY id), '')) FROM accounts a) AS accounts,
                  (SELECT count(*)::int FROM audit_events) AS events`,
        )
      )[0];
    const expectInternalError = (res: { status: number; body: unknown; text: string }, secrets: string[]) => {
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ statusCode: 500, code: 'INTERNAL', message: 'internal error' });
      secrets.forEach((s) => expect(res.text).not.toContain(s));
      expect(res.text).not.toContain('audit store refuses writes');
    };

    afterEach(restoreAuditInserts);

    it('fails the action, and changes nothing, when its audit event cannot be written', async () => {
      const kept = (await h.call('post', '/v1/targets', postgresTarget()).expect(201)).body;
      const owner = (await h.call('post', '/v1/targets', postgresTarget()).expect(201)).body;
      const existing = (await h.call('post', '/v1/accounts', accountInput(owner.id)).expect(201)).body;
      // what the new account set off in the background (its first contact with the target) ends before the snapshot
      await vault.get(ClaimedWork).settle();
      const before = await rowsOf();
      await failAuditInserts();

      const input = postgresTarget();
      expectInternalError(await h.call('post', '/v1/targets', input), [input.admin.password]);
      expect(await vault.db.query('SELECT id FROM targets WHERE name = $1', [input.name])).toEqual([]);

      const newPassword = secretValue('new-admin');
      expectInternalError(
        await h.call('patch', `/v1/targets/${kept.id}`, { host: 'changed.example.com', admin: { username: 'other', password: newPassword } }),
        [newPassword],
      );
      expectInternalError(await h.call('delete', `/v1/targets/${kept.id}`), []);

      const account = accountInput(owner.id);
      expectInternalError(await h.call('post', '/v1/accounts', account), [account.password]);
      expectInternalError(await h.call('patch', `/v1/accounts/${existing.id}`, { policy: { approvalsRequired: 3 } }), []);
      expectInternalError(await h.call('delete', `/v1/accounts/${existing.id}`), []);

      expect(await rowsOf()).toEqual(before);

      await restoreAuditInserts();
      const retried = (await h.call('post', '/v1/targets', input).expect(201)).body;
      expect(retried.name).toBe(input.name);
      expect(await h.verify()).toMatchObject({ ok: true });
    });
  });
});

describe('audit tamper evidence (e2e, real PostgreSQL, a fresh chain per test)', () => {
  let vault: TestVault;
  let auth: string;
  let h: ReturnType<typeof auditHelpers>;
  /** The sealed events, in chain order. */
  let chain: Array<{ id: string; seq: string }>;

  beforeEach(async () => {
    vault = await startTestVault();
    auth = await vault.adminAuth();
    h = auditHelpers(vault, () => auth);
    // at least 12 events (bootstrap, login, MFA enrollment, 10 targets): ids and seqs cross from one digit to two
    for (let i = 0; i < 10; i++) await h.call('post', '/v1/targets', postgresTarget()).expect(201);
    await vault.get(AuditSealer).sealPending();
    const verified = await h.verify();
    chain = await vault.db.query('SELECT e.id::text AS id, e.seq::text AS seq FROM audit_events e ORDER BY e.seq');
    expect(chain.length).toBeGreaterThanOrEqual(12);
    expect(verified).toMatchObject({ ok: true, count: chain.length });
    expect(chain.map((e) => e.seq)).toEqual(chain.map((_e, i) => String(i + 1)));
  });
  afterEach(() => vault.close());

  it('finds an edited event: its own id', async () => {
    await vault.db.query(`UPDATE audit_events SET details = details || '{"host": "elsewhere.example.com"}' WHERE id = $1`, [chain[9].id]);
    expect(await h.verify()).toMatchObject({ ok: false, firstInvalidId: chain[9].id });
  });

  it('finds an event whose outcome or actor was changed', async () => {
    await vault.db.query("UPDATE audit_events SET outcome = 'failure', actor_id = NULL WHERE id = $1", [chain[5].id]);
    expect(await h.verify()).toMatchObject({ ok: false, firstInvalidId: chain[5].id });
  });

  it('finds a deleted event in the middle: the id of the event after it', async () => {
    await vault.db.query('DELETE FROM audit_events WHERE id = $1', [chain[8].id]);
    expect(await h.verify()).toMatchObject({ ok: false, firstInvalidId: chain[9].id });
  });

  it('finds two events swapped in order: the first of them in chain order', async () => {
    const [a, b] = [chain[8], chain[9]];
    await vault.db.query('UPDATE audit_events SET seq = -1 WHERE id = $1', [a.id]);
    await vault.db.query('UPDATE audit_events SET seq = $1 WHERE id = $2', [a.seq, b.id]);
    await vault.db.query('UPDATE audit_events SET seq = $1 WHERE id = $2', [b.seq, a.id]);
    // b now sits at a's place in the chain and its link no longer matches the event before it
    expect(await h.verify()).toMatchObject({ ok: false, firstInvalidId: b.id });
  });

  it('finds a forged event inserted without the key: its id', async () => {
    const [forged] = await vault.db.query<{ id: string }>(
      `INSERT INTO audit_events (at, type, actor_id, subject_type, subject_id, outcome, details, mac)
       VALUES (now(), 'target.deleted', NULL, 'target', NULL, 'success', '{}', $1) RETURNING id::text AS id`,
      [randomBytes(32)],
    );
    expect(await h.verify()).toMatchObject({ ok: false, firstInvalidId: forged.id });
  });

  it('finds a genuine event copied under a new id (its MAC covers the id): the copy', async () => {
    const [copy] = await vault.db.query<{ id: string }>(
      `INSERT INTO audit_events (at, type, actor_id, subject_type, subject_id, outcome, details, mac)
       SELECT at, type, actor_id, subject_type, subject_id, outcome, details, mac FROM audit_events WHERE id = $1
       RETURNING id::text AS id`,
      [chain[10].id],
    );
    expect(await h.verify()).toMatchObject({ ok: false, firstInvalidId: copy.id });
  });

  it('finds the newest events deleted (tail truncation): ok false, no invalid id', async () => {
    await vault.db.query('DELETE FROM audit_events WHERE seq >= $1', [chain[10].seq]);
    expect(await h.verify()).toEqual({ ok: false, firstInvalidId: null, reason: expect.any(String) });
  });

  it('finds a chain head moved back to hide deleted events', async () => {
    await vault.db.query('DELETE FROM audit_events WHERE seq = $1', [chain[chain.length - 1].seq]);
    await vault.db.query('UPDATE audit_chain_head SET seq = seq - 1');
    expect(await h.verify()).toMatchObject({ ok: false, firstInvalidId: null });
  });
});

describe('audit tamper evidence beyond the database (anchors, emptied log, held lock)', () => {
  let vault: TestVault;
  let h: ReturnType<typeof auditHelpers>;

  beforeEach(async () => {
    vault = await startTestVault();
    const auth = await vault.adminAuth();
    h = auditHelpers(vault, () => auth);
    for (let i = 0; i < 3; i++) await h.call('post', '/v1/targets', postgresTarget()).expect(201);
  });
  afterEach(() => vault.close());

  const verifyWith = async (anchor: { headSeq: string; headHash: string }) =>
    (await h.call('get', `/v1/audit-events/verify?headSeq=${anchor.headSeq}&headHash=${anchor.headHash}`).expect(200)).body;

  it('finds the tail cut off and an old head restored, given a head recorded earlier', async () => {
    const early = await h.verify();
    const [saved] = await vault.db.query<{ seq: string; hash: Buffer; mac: Buffer }>('SELECT seq::text AS seq, hash, mac FROM audit_chain_head');
    for (let i = 0; i < 3; i++) await h.call('post', '/v1/targets', postgresTarget()).expect(201);
    const late = await h.verify();
    expect(await verifyWith(late)).toMatchObject({ ok: true });
    expect(await verifyWith(early)).toMatchObject({ ok: true }); // an older anchor is a prefix of the chain

    // the attacker removes the newest events and puts back the head they saved before them
    await vault.db.query('DELETE FROM audit_events WHERE seq > $1', [saved.seq]);
    await vault.db.query('UPDATE audit_chain_head SET seq = $1, hash = $2, mac = $3', [saved.seq, saved.hash, saved.mac]);
    expect(await h.verify()).toMatchObject({ ok: true }); // undetectable from inside the database alone…
    expect(await verifyWith(late)).toMatchObject({ ok: false, firstInvalidId: null }); // …but not against the anchor
  });

  it('finds a rewritten chain against an anchor', async () => {
    const anchor = await h.verify();
    expect(await verifyWith({ headSeq: anchor.headSeq, headHash: 'f'.repeat(64) })).toMatchObject({ ok: false });
  });

  it('refuses half an anchor', async () => {
    const res = await h.call('get', `/v1/audit-events/verify?headSeq=1`).expect(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
  });

  it('finds an emptied log (every event and the head deleted)', async () => {
    await h.verify();
    await vault.db.query('DELETE FROM audit_events');
    await vault.db.query('DELETE FROM audit_chain_head');
    expect(await h.verify()).toMatchObject({ ok: false, firstInvalidId: null });
  });

  it('answers 503 rather than a partial verdict while another session holds the sealing lock', async () => {
    await vault.db.query('SELECT pg_advisory_lock($1)', [SEAL_LOCK]);
    try {
      const res = await h.call('get', '/v1/audit-events/verify').expect(503);
      expect(res.body).toEqual({ statusCode: 503, code: 'UNAVAILABLE', message: expect.any(String), retryAfterSeconds: expect.any(Number) });
      expect(res.headers['retry-after']).toBe(String(res.body.retryAfterSeconds));
    } finally {
      await vault.db.query('SELECT pg_advisory_unlock($1)', [SEAL_LOCK]);
    }
    expect(await h.verify()).toMatchObject({ ok: true });
  });
});
