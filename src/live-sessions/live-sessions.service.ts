import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { AccountStore } from '../accounts/account-store';
import { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { MAX_PAGE_SIZE } from '../common/pagination';
import { SESSION_ID_PATTERNS, TargetSession } from '../connectors/connector.interface';
import { UnitOfWork } from '../database/unit-of-work';
import { CheckoutStore, seesAll } from '../checkouts/checkout-store';
import { EphemeralStore } from '../ephemeral/ephemeral-store';
import { TargetEntity } from '../targets/target.entity';
import { TargetsService } from '../targets/targets.service';
import { LiveSessionsView, SessionTerminatedView, TargetSessionView } from './live-sessions.dto';

/** How many accounts of one target are asked at once for the target-wide view. */
const PARALLEL = 4;

/**
 * The live sessions of the accounts the vault manages, read from the target through its connector each time (nothing
 * is kept), and an admin's terminate of one of them. Sessions of the target's admin are never listed nor ended (the
 * connector refuses them); a session is ended only when it belongs to an account the vault manages on that target.
 */
@Injectable()
export class LiveSessionsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly checkouts: CheckoutStore,
    private readonly accounts: AccountStore,
    private readonly ephemeral: EphemeralStore,
    private readonly targets: TargetsService,
    private readonly clock: Clock,
  ) {}

  /** The holder, admins, approvers and auditors (whoever may read the checkout); none unless it is active and not past its expiry. */
  async forCheckout(actor: Actor, id: string): Promise<LiveSessionsView> {
    const em = this.dataSource.manager;
    const checkout = await this.checkouts.find(em, actor, id);
    const account = await this.accounts.find(em, checkout.accountId);
    const live = checkout.status === 'active' && !!checkout.expiresAt && checkout.expiresAt > this.clock.now();
    return this.ofAccount(em, account.targetId, account.username, live);
  }

  /** The vendor holder, the requester, admins, approvers and auditors; none unless the account is active and not past its expiry. */
  async forEphemeral(actor: Actor, id: string): Promise<LiveSessionsView> {
    const em = this.dataSource.manager;
    const row = await this.ephemeral.find(em, id);
    if (!seesAll(actor) && row.requesterId !== actor.id && row.vendorId !== actor.id) throw Errors.notFound('ephemeral account');
    const live = row.status === 'active' && !!row.username && (!row.expiresAt || row.expiresAt > this.clock.now());
    return this.ofAccount(em, row.targetId, row.username ?? null, live);
  }

  /** Admins: the sessions of every account the vault manages on the target (vaulted accounts and one-time accounts on it). */
  async forTarget(id: string): Promise<LiveSessionsView> {
    const em = this.dataSource.manager;
    const target = await this.targets.find(em, id);
    const usernames = await this.managedUsernames(em, target);
    const conn = await this.targets.connect(target);
    const items: TargetSessionView[] = [];
    for (let i = 0; i < usernames.length; i += PARALLEL) {
      const lists = await Promise.all(usernames.slice(i, i + PARALLEL).map((username) => conn.listSessions({ username })));
      items.push(...lists.flat().map(view));
    }
    return { items, targetId: target.id, account: null };
  }

  /**
   * Ends one session, when it belongs to an account the vault manages on the target (each connector reads it again and
   * ends it only while it still matches the id and that account). 404 SESSION_NOT_FOUND when none does: nothing ended.
   */
  async terminate(actor: Actor, targetId: string, sessionId: string): Promise<SessionTerminatedView> {
    const em = this.dataSource.manager;
    const target = await this.targets.find(em, targetId);
    if (!SESSION_ID_PATTERNS[target.type].test(sessionId)) {
      throw new DomainException('SESSION_ID_INVALID', `not a ${target.type} session id`);
    }
    const conn = await this.targets.connect(target);
    for (const username of await this.managedUsernames(em, target)) {
      if (!(await conn.endSession({ username, sessionId }))) continue;
      await this.uow.run(({ audit }) =>
        audit({ type: 'session.terminated', actor, subjectType: 'target', subjectId: target.id, details: { targetId: target.id, account: username, sessionId } }),
      );
      return { ended: true };
    }
    throw new DomainException('SESSION_NOT_FOUND', 'no live session with this id belongs to an account the vault manages on this target');
  }

  private async ofAccount(em: EntityManager, targetId: string, username: string | null, live: boolean): Promise<LiveSessionsView> {
    if (!live || !username) return { items: [], targetId, account: username };
    const conn = await this.targets.connectById(em, targetId);
    return { items: (await conn.listSessions({ username })).map(view), targetId, account: username };
  }

  /** The vaulted accounts of the target and its one-time accounts that exist or may exist there; never its admin. */
  private async managedUsernames(em: EntityManager, target: TargetEntity): Promise<string[]> {
    const names = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await this.accounts.list({ targetId: target.id, limit: MAX_PAGE_SIZE, ...(cursor ? { cursor } : {}) });
      for (const a of page.items) names.add(a.username);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    for (const n of await this.ephemeral.usernamesOnTarget(em, target.id)) names.add(n);
    names.delete(target.adminUsername);
    return [...names].sort();
  }
}

/** The connector's answer as the API shows it (optional parts only where the type has them). */
function view(s: TargetSession): TargetSessionView {
  return {
    id: s.id,
    username: s.username,
    kind: s.kind,
    clientAddress: s.clientAddress,
    since: s.since,
    state: s.state,
    ...(s.database !== undefined ? { database: s.database } : {}),
    ...(s.tty !== undefined ? { tty: s.tty } : {}),
    ...(s.command !== undefined ? { command: s.command } : {}),
    ...(s.processes !== undefined ? { processes: s.processes.map((p) => ({ pid: p.pid, command: p.command })) } : {}),
  };
}
