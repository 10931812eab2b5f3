import { Injectable, OnModuleInit } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { DomainException, Errors } from '../common/errors';
import { Page, PageQuery } from '../common/pagination';
import { SecretBoxService } from '../crypto/secret-box.service';
import { isUniqueViolation, keysetPage } from '../database/queries';
import { MetricsService } from '../metrics/metrics.service';
import { targetAddressColumnsSql } from '../targets/target-sql';
import { TargetsService } from '../targets/targets.service';
import { AccountEntity, accountSecretRef } from './account.entity';
import { ACCOUNT_STATUSES, AccountStatus, AccountTransition, fromStatusSql } from './account-states';
import { AccountPolicy, effectivePolicy } from './policy';
import { sqlColumn } from '../database/sql-names';

/** An account row; its `policy` is always the effective one (defaults of fields added since it was written filled in). */
export type Account = AccountEntity;

/** What `create` writes: the account starts `available`; without a password the vault sets one by onboarding. */
export interface NewAccount {
  id: string;
  targetId: string;
  username: string;
  /** Plaintext; stored encrypted, bound to (accounts, id, password_secret). */
  password: string | null;
  policy: AccountPolicy;
  nextRotationAt: Date;
}

/** The account taken by a checkout, with where to use it (its target's address), read in the taking statement. */
export interface TakenAccount {
  id: string;
  policy: AccountPolicy;
  username: string;
  passwordSecret: Buffer;
  host: string;
  port: number;
}

/** An account's current password with where to use it. */
export interface AccountCredential {
  username: string;
  password: string;
  host: string;
  port: number;
}

export interface AccountListFilter extends PageQuery {
  targetId?: string;
  status?: AccountStatus;
}

/** Every column under its entity name, so raw statements return AccountEntity-shaped rows (alias `a`). */
const COLUMNS = `a.id, a.target_id AS "targetId", a.username, a.status, a.password_secret AS "passwordSecret",
  a.next_rotation_at AS "nextRotationAt", a.rotation_failures AS "rotationFailures", a.last_verified_at AS "lastVerifiedAt",
  a.policy, a.must_rotate AS "mustRotate", a.last_rotated_at AS "lastRotatedAt", a.created_at AS "createdAt",
  a.updated_at AS "updatedAt", a.version`;

/** What every transition stamps, the same way. */
const STAMP = 'version = a.version + 1, updated_at = now()';

const withEffectivePolicy = <T extends { policy: Partial<AccountPolicy> }>(row: T): T & { policy: AccountPolicy } => ({ ...row, policy: effectivePolicy(row.policy) });

/**
 * The owner of the `accounts` table: every statement on it is here. Status changes are the named transitions of
 * `ACCOUNT_TRANSITIONS` (account-states.ts): each checks its `from` states in its own statement, bumps `version`
 * and stamps `updated_at`, and answers whether it happened; nothing else writes `status`. Every read returns the
 * effective policy. Other owners that must combine tables in one statement compose `accountSettledSql`; the
 * checkout take composes the caller's guard into its own statement (the accounts row is aliased `a`).
 */
@Injectable()
export class AccountStore implements OnModuleInit {
  constructor(
    private readonly dataSource: DataSource,
    private readonly secrets: SecretBoxService,
    private readonly metrics: MetricsService,
    private readonly targets: TargetsService,
  ) {}

  onModuleInit(): void {
    // the targets module asks before it deletes a target or takes a new admin: accounts are what it cannot see
    this.targets.registerUsage({
      order: 1,
      count: async (em, targetId) => (await em.query('SELECT count(*)::int AS n FROM accounts WHERE target_id = $1', [targetId]))[0].n as number,
      deleteRefusal: (n) => `target has ${n} account(s); delete them first`,
      hasUsername: async (em, targetId, username) =>
        (await em.query('SELECT EXISTS (SELECT 1 FROM accounts WHERE target_id = $1 AND username = $2) AS taken', [targetId, username]))[0].taken as boolean,
    });
    this.metrics.stateGauge({
      name: 'vault_accounts',
      help: 'Accounts by status (needs_attention: rotation kept failing, someone must look)',
      label: 'status',
      values: ACCOUNT_STATUSES,
      read: () => this.countByStatus(),
    });
  }

  // ---- rows ----

  /** A new account, `available`. 409 ACCOUNT_EXISTS when the target already has one with this username. */
  async create(em: EntityManager, row: NewAccount): Promise<Account> {
    try {
      const [created]: Account[] = await em.query(
        `INSERT INTO accounts AS a (id, target_id, username, status, password_secret, policy, next_rotation_at)
         VALUES ($1, $2, $3, 'available', $4, $5::jsonb, $6) RETURNING ${COLUMNS}`,
        [row.id, row.targetId, row.username, row.password === null ? null : this.encrypt(row.id, row.password), JSON.stringify(row.policy), row.nextRotationAt],
      );
      return withEffectivePolicy(created);
    } catch (e) {
      if (isUniqueViolation(e)) throw Errors.conflict('ACCOUNT_EXISTS', 'this target already has an account with this username');
      throw e;
    }
  }

  /** One account (optionally `FOR UPDATE`); 404 NOT_FOUND when there is none. */
  async find(em: EntityManager, id: string, lock = false): Promise<Account> {
    const [row]: Account[] = await em.query(`SELECT ${COLUMNS} FROM accounts a WHERE a.id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
    if (!row) throw Errors.notFound('account');
    return withEffectivePolicy(row);
  }

  /** One keyset page, ascending on id. */
  list(q: AccountListFilter): Promise<Page<Account>> {
    return keysetPage(this.dataSource.manager, AccountEntity, { column: 'id', kind: 'uuid' }, q, withEffectivePolicy, (qb) => {
      if (q.targetId) qb.andWhere('r.target_id = :targetId', { targetId: q.targetId });
      if (q.status) qb.andWhere('r.status = :status', { status: q.status });
    });
  }

  /** How many accounts are in each status (the metrics gauge). */
  async countByStatus(): Promise<Record<string, number>> {
    const rows: Array<{ status: AccountStatus; n: number }> = await this.dataSource.query('SELECT status, count(*)::int AS n FROM accounts GROUP BY status');
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  /** A new policy (and the rotation date it implies); 404 when there is no such account. */
  async updatePolicy(em: EntityManager, id: string, policy: AccountPolicy, nextRotationAt: Date | null): Promise<Account> {
    const [[row]]: [Account[], number] = await em.query(
      `UPDATE accounts a SET policy = $2::jsonb, next_rotation_at = $3, ${STAMP} WHERE a.id = $1 RETURNING ${COLUMNS}`,
      [id, JSON.stringify(policy), nextRotationAt],
    );
    if (!row) throw Errors.notFound('account');
    return withEffectivePolicy(row);
  }

  /** Transition `remove`: deletes the account (its rotations and checkouts go with it) if it is available or needs attention. */
  async remove(em: EntityManager, id: string): Promise<boolean> {
    const [, n]: [unknown[], number] = await em.query(`DELETE FROM accounts a WHERE a.id = $1 AND ${fromStatusSql('remove')}`, [id]);
    return n === 1;
  }

  // ---- checkouts ----

  /**
   * Transition `takeForCheckout`: available, with a password, not must_rotate, and `extraGuardSql` (a boolean
   * expression of the caller's about the accounts row `a`, e.g. the checkouts owner's no-cleanup-owed fragment)
   * → checked_out. One statement: of any number of concurrent takers exactly one gets the row. Null when not taken
   * (`whyNotTakeable` says why).
   */
  async takeForCheckout(em: EntityManager, id: string, extraGuardSql?: string): Promise<TakenAccount | null> {
    const [[row]]: [TakenAccount[], number] = await em.query(
      `UPDATE accounts a SET status = 'checked_out', ${STAMP}
        WHERE a.id = $1 AND ${fromStatusSql('takeForCheckout')} AND a.password_secret IS NOT NULL AND NOT a.must_rotate${extraGuardSql ? ` AND (${extraGuardSql})` : ''}
        RETURNING a.id, a.policy, a.username, a.password_secret AS "passwordSecret", ${targetAddressColumnsSql('a.target_id')}`,
      [id],
    );
    return row ? withEffectivePolicy(row) : null;
  }

  /**
   * Why `takeForCheckout` would not take the account, as far as the account itself says: each state its own stable
   * code; null when the account is takeable (then the caller's own guard refused, or it changed meanwhile).
   */
  async whyNotTakeable(em: EntityManager, id: string): Promise<DomainException | null> {
    const [a]: Array<{ status: AccountStatus; hasPassword: boolean; mustRotate: boolean }> = await em.query(
      'SELECT a.status, a.password_secret IS NOT NULL AS "hasPassword", a.must_rotate AS "mustRotate" FROM accounts a WHERE a.id = $1',
      [id],
    );
    if (!a) return Errors.notFound('account');
    if (a.status === 'checked_out') return Errors.conflict('ACCOUNT_CHECKED_OUT', 'the account is checked out (or awaiting approval) by someone else');
    if (a.status === 'rotating') return Errors.conflict('ACCOUNT_ROTATING', 'the account is being rotated; try again in a moment');
    if (a.status === 'needs_attention') return Errors.conflict('ACCOUNT_NEEDS_ATTENTION', 'the account needs attention from an administrator (rotation kept failing)');
    if (!a.hasPassword) return Errors.conflict('ACCOUNT_NO_PASSWORD', 'the vault holds no password for this account yet');
    if (a.mustRotate) return Errors.conflict('ACCOUNT_ROTATION_PENDING', 'the account must be rotated after its last checkout before it is handed out again');
    return null;
  }

  /** Transition `release`: checked_out → available (a checkout ended without a rotation). */
  release(em: EntityManager, id: string): Promise<boolean> {
    return this.transition(em, 'release', id, "status = 'available'");
  }

  /** Transition `markMustRotate`: the running (post-check-in) rotation must succeed before the next checkout. */
  markMustRotate(em: EntityManager, id: string): Promise<boolean> {
    return this.transition(em, 'markMustRotate', id, 'must_rotate = true');
  }

  /** The account a check-in ends, locked (`FOR UPDATE`) before its rotation is written ahead; 404 when gone. */
  async lockForCheckin(em: EntityManager, id: string): Promise<Account & { hasPassword: boolean }> {
    const account = await this.find(em, id, true);
    return { ...account, hasPassword: account.passwordSecret !== null };
  }

  /** The account's current password with where to use it. 404, or 409 ACCOUNT_NO_PASSWORD before it has one. */
  async credential(em: EntityManager, id: string): Promise<AccountCredential> {
    const [row]: Array<Pick<TakenAccount, 'id' | 'username' | 'host' | 'port'> & { passwordSecret: Buffer | null }> = await em.query(
      `SELECT a.id, a.username, a.password_secret AS "passwordSecret", ${targetAddressColumnsSql('a.target_id')} FROM accounts a WHERE a.id = $1`,
      [id],
    );
    if (!row) throw Errors.notFound('account');
    return this.credentialOf(row);
  }

  /** Decrypts a row read with its address (`takeForCheckout`'s answer). 409 ACCOUNT_NO_PASSWORD without a password. */
  credentialOf(row: Pick<TakenAccount, 'id' | 'username' | 'host' | 'port'> & { passwordSecret: Buffer | null }): AccountCredential {
    const password = this.password(row);
    if (password === null) throw Errors.conflict('ACCOUNT_NO_PASSWORD', 'the vault holds no password for this account yet');
    return { username: row.username, password, host: row.host, port: row.port };
  }

  /** The stored password in clear (null when the vault holds none yet). */
  password(row: Pick<Account, 'id' | 'passwordSecret'>): string | null {
    return row.passwordSecret ? this.secrets.decrypt(accountSecretRef(row.id), row.passwordSecret) : null;
  }

  // ---- rotation ----

  /** Transition `beginRotation`: available | checked_out | needs_attention → rotating (its rotation is written ahead in the same transaction). */
  beginRotation(em: EntityManager, id: string): Promise<boolean> {
    return this.transition(em, 'beginRotation', id, "status = 'rotating'");
  }

  /** Transition `finishRotation`: rotating → available with the new password; failures and must_rotate reset. */
  finishRotation(em: EntityManager, id: string, password: string, now: Date, nextAt: Date): Promise<boolean> {
    return this.transition(
      em,
      'finishRotation',
      id,
      "status = 'available', password_secret = $2, last_rotated_at = $3, next_rotation_at = $4, rotation_failures = 0, must_rotate = false",
      [this.encrypt(id, password), now, nextAt],
    );
  }

  /**
   * Transition `failRotation` (rotating → available, retried at `nextAt`) or, with `attention`, `needsAttention`
   * (rotating → needs_attention, not rotated again until an admin acts).
   */
  failRotation(em: EntityManager, id: string, o: { attention: boolean; failures: number; nextAt: Date | null }): Promise<boolean> {
    return o.attention
      ? this.transition(em, 'needsAttention', id, "status = 'needs_attention', rotation_failures = $2, next_rotation_at = NULL", [o.failures])
      : this.transition(em, 'failRotation', id, "status = 'available', rotation_failures = $2, next_rotation_at = $3", [o.failures, o.nextAt]);
  }

  /**
   * Available accounts due for rotation at `now` (not in `skip`), oldest due first, locked with SKIP LOCKED in the
   * caller's transaction, which begins their rotations: each is taken by one instance.
   */
  async takeDueForRotation(em: EntityManager, limit: number, now: Date, skip: readonly string[] = []): Promise<Account[]> {
    const rows: Account[] = await em.query(
      `SELECT ${COLUMNS} FROM accounts a WHERE a.status = 'available' AND a.next_rotation_at <= $1 AND NOT (a.id = ANY ($3::uuid[]))
        ORDER BY a.next_rotation_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [now, limit, skip],
    );
    return rows.map(withEffectivePolicy);
  }

  /**
   * Available accounts with a password not verified for `seconds` (not in `skip`), least recently first: taken with SKIP LOCKED and
   * stamped verified in the same statement, so each is checked by one instance once per period. (Bookkeeping, not a
   * transition: version and updated_at stay.)
   */
  async takeForHeartbeat(em: EntityManager, limit: number, seconds: number, skip: readonly string[] = []): Promise<Account[]> {
    const [rows]: [Account[], number] = await em.query(
      `UPDATE accounts a SET last_verified_at = now()
        WHERE a.id IN (SELECT d.id FROM accounts d
                        WHERE d.status = 'available' AND d.password_secret IS NOT NULL AND NOT (d.id = ANY ($3::uuid[]))
                          AND (d.last_verified_at IS NULL OR d.last_verified_at < now() - make_interval(secs => $2))
                        ORDER BY d.last_verified_at ASC NULLS FIRST LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING ${COLUMNS}`,
      [limit, seconds, skip],
    );
    return rows.map(withEffectivePolicy);
  }

  /** One named transition: `set` only where the row's status is one the transition starts from; stamped the same way. */
  private async transition(em: EntityManager, name: AccountTransition, id: string, set: string, params: unknown[] = []): Promise<boolean> {
    const [, n]: [unknown[], number] = await em.query(`UPDATE accounts a SET ${set}, ${STAMP} WHERE a.id = $1 AND ${fromStatusSql(name)}`, [id, ...params]);
    return n === 1;
  }

  private encrypt(id: string, password: string): Buffer {
    return this.secrets.encrypt(accountSecretRef(id), password);
  }
}

/**
 * SQL fragment for other owners' statements: true when the account `accountIdColumn` names (a column of the caller's
 * statement, e.g. `c.account_id`) is settled — not rotating and owing no rotation (no must_rotate); false when there
 * is no such account.
 */
export function accountSettledSql(accountIdColumn: string): string {
  return `EXISTS (SELECT 1 FROM accounts a_settled WHERE a_settled.id = ${column(accountIdColumn)} AND a_settled.status <> 'rotating' AND NOT a_settled.must_rotate)`;
}

const column = sqlColumn; // it ends up in SQL text
