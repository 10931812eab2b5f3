import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { DecisionDto } from '../approvals/approvals.dto';
import { countApprovals, recordDecision, requestDigest } from '../approvals/approvals';
import { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { DomainException, Errors } from '../common/errors';
import { Page } from '../common/pagination';
import { APP_CONFIG, AppConfig } from '../config/config';
import { KeyringService } from '../crypto/keyring.service';
import type { Tx } from '../database/unit-of-work';
import { UnitOfWork } from '../database/unit-of-work';
import { requireApproverStepUp } from '../identity/step-up';
import { UsersService } from '../identity/users.service';
import { TargetEntity } from '../targets/target.entity';
import { TargetsService } from '../targets/targets.service';
import { checkAccess, staticRefusals, DEFAULT_EPHEMERAL_POLICY, EphemeralPolicy, EphemeralPolicyDto, inspectionOf, policyFrom, policyNotAllowed } from './ephemeral-policy';
import { EphemeralNotices } from './ephemeral-notices';
import { EPHEMERAL_DECISIONS, EphemeralStore } from './ephemeral-store';
import { CreateEphemeralDto, EphemeralListQuery, EphemeralView, mapEphemeral } from './ephemeral.dto';
import { EphemeralAccountEntity } from './ephemeral.entity';

const SECOND = 1000;
/** Roles that see every one-time account; a requester sees what they asked for, a vendor what is theirs. */
const SEES_ALL = ['admin', 'approver', 'auditor'];

/**
 * One-time accounts before and around the target work: requests checked against the target's ephemeral policy,
 * approvals (shared mechanics in src/approvals), reads with per-role visibility, and the policies themselves.
 * Creating and removing accounts on targets is EphemeralProvisioner's.
 */
@Injectable()
export class EphemeralService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly store: EphemeralStore,
    private readonly keyring: KeyringService,
    private readonly targets: TargetsService,
    private readonly users: UsersService,
    private readonly notices: EphemeralNotices,
    private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async request(actor: Actor, dto: CreateEphemeralDto): Promise<EphemeralView> {
    return this.uow.run(async (tx) => {
      const { em, audit } = tx;
      // locked: the target cannot be deleted or moved while the request is written
      const target = await this.targets.find(em, dto.targetId, true).catch((e: unknown) => {
        throw e instanceof DomainException && e.status === 404 ? Errors.validation('targetId: no such target') : e;
      });
      const vendor = await this.users.get(dto.vendorUserId, em).catch((e: unknown) => {
        if (e instanceof DomainException && e.status === 404) return null;
        throw e;
      });
      if (!vendor || vendor.disabled || !vendor.roles.includes('vendor')) throw Errors.validation('vendorUserId: not an enabled user with the vendor role');
      if (vendor.id === actor.id) throw new DomainException('SELF_APPROVAL', 'a requester cannot ask for a one-time account for themselves');
      const policy = await this.policyOf(em, target.id);
      if (dto.ttlSeconds > policy.maxTtlSeconds) {
        throw new DomainException('TTL_EXCEEDS_POLICY', `ttlSeconds may be at most ${policy.maxTtlSeconds} on this target`, { maxTtlSeconds: policy.maxTtlSeconds });
      }
      const access = checkAccess(target.type, policy, dto.access);
      const now = this.clock.now();
      const row: Partial<EphemeralAccountEntity> & { id: string } = {
        id: randomUUID(),
        targetId: target.id,
        vendorId: vendor.id,
        requesterId: actor.id,
        status: policy.approvalsRequired > 0 ? 'pending_approval' : 'approved',
        justification: dto.justification,
        ttlSeconds: dto.ttlSeconds,
        access,
        approvalsRequired: policy.approvalsRequired,
        requestedAt: now,
        requestDeadline: new Date(now.getTime() + this.config.ephemeral.requestTimeoutSeconds * SECOND),
        attempts: 0,
      };
      const saved = await this.store.insert(em, row);
      await audit({
        type: 'ephemeral.requested',
        actor,
        subjectType: 'ephemeral_account',
        subjectId: saved.id,
        details: { targetId: target.id, vendorId: vendor.id, ttlSeconds: dto.ttlSeconds, access, justification: dto.justification, approvalsRequired: policy.approvalsRequired },
      });
      const names = { target: target.name, requester: actor.name, vendor: vendor.username };
      if (saved.status === 'pending_approval') await this.notices.approvalRequested(tx, saved, names);
      else await this.notices.ready(tx, saved, names);
      return this.view(em, saved);
    });
  }

  /** MFA. Approved once `approvalsRequired` distinct approvers (never the requester) approved this exact request. */
  async approve(actor: Actor, id: string, dto: DecisionDto): Promise<EphemeralView> {
    requireApproverStepUp(this.config);
    return this.uow.run(async (tx) => {
      const { em, audit } = tx;
      const { row, approvals } = await this.decide(em, actor, id, 'approve', dto);
      await audit({ type: 'ephemeral.approved', actor, subjectType: 'ephemeral_account', subjectId: id, details: { approvals, approvalsRequired: row.approvalsRequired, comment: dto.comment ?? null } });
      if (approvals >= row.approvalsRequired && (await this.store.approve(em, id))) await this.notices.approved(tx, row, await this.notices.names(em, row));
      return this.view(em, await this.find(em, actor, id));
    });
  }

  /** MFA. One denial ends the request. */
  async deny(actor: Actor, id: string, dto: DecisionDto): Promise<EphemeralView> {
    requireApproverStepUp(this.config);
    return this.uow.run(async (tx) => {
      const { em, audit } = tx;
      const { row } = await this.decide(em, actor, id, 'deny', dto);
      await this.store.deny(em, id, actor.id, this.clock.now());
      await audit({ type: 'ephemeral.denied', actor, subjectType: 'ephemeral_account', subjectId: id, details: { comment: dto.comment ?? null } });
      await this.notices.denied(tx, row, await this.notices.names(em, row), { by: actor.name, comment: dto.comment });
      return this.view(em, await this.find(em, actor, id));
    });
  }

  async get(actor: Actor, id: string): Promise<EphemeralView> {
    const em = this.dataSource.manager;
    return this.view(em, await this.find(em, actor, id));
  }

  async list(actor: Actor, q: EphemeralListQuery): Promise<Page<EphemeralView>> {
    const em = this.dataSource.manager;
    const page = await this.store.page(em, q, seesAll(actor) ? null : actor.id);
    const approvals = await this.store.approvalsOf(em, page.items.map((r) => r.id));
    const names = await this.users.usernames(em, page.items.flatMap((r) => [r.requesterId, r.vendorId]));
    return { items: page.items.map((r) => mapEphemeral(r, approvals.filter((a) => a.ephemeralId === r.id), this.digest(r), names)), nextCursor: page.nextCursor };
  }

  /** Loads one (optionally `FOR UPDATE`); 404 when it does not exist or the actor may not see it. */
  async find(em: EntityManager, actor: Actor, id: string, lock = false): Promise<EphemeralAccountEntity> {
    const row = await this.store.find(em, id, lock);
    if (!seesAll(actor) && row.requesterId !== actor.id && row.vendorId !== actor.id) throw Errors.notFound('ephemeral account');
    return row;
  }

  async view(em: EntityManager, row: EphemeralAccountEntity): Promise<EphemeralView> {
    const approvals = await this.store.approvalsOf(em, [row.id]);
    return mapEphemeral(row, approvals, this.digest(row), await this.users.usernames(em, [row.requesterId, row.vendorId]));
  }

  async getPolicy(targetId: string): Promise<EphemeralPolicy> {
    await this.targets.find(this.dataSource.manager, targetId);
    return this.policyOf(this.dataSource.manager, targetId);
  }

  /**
   * Sets what one-time accounts on the target may have. Beyond the static rules (policyFrom), everything it allows is
   * checked against the target's own catalog first (INVARIANT 20): each group, role, database or table must exist and
   * give nothing privileged; any refusal is 400 POLICY_NOT_ALLOWED listing them, and nothing is stored.
   */
  async setPolicy(actor: Actor, targetId: string, dto: EphemeralPolicyDto): Promise<EphemeralPolicy> {
    const policy = policyFrom(dto);
    const target = await this.targets.find(this.dataSource.manager, targetId);
    const refused = await this.refusedByTarget(target, { groups: policy.allowedGroups, roles: policy.allowedRoles, databases: policy.allowedDatabases, grants: policy.allowedGrants });
    if (refused.length) throw policyNotAllowed(refused);
    await this.uow.run(async ({ em, audit }) => {
      const current = await this.targets.find(em, targetId, true);
      // checked against this server as this admin: a target moved meanwhile is checked again
      if (current.host !== target.host || current.port !== target.port || current.adminUsername !== target.adminUsername) {
        throw Errors.conflict('TARGET_IN_USE', 'the target changed while its policy was being checked; try again');
      }
      await this.store.savePolicy(em, targetId, policy);
      await audit({ type: 'target.ephemeral_policy_set', actor, subjectType: 'target', subjectId: targetId, details: { policy } });
    });
    return policy;
  }

  /**
   * What the target's own catalog refuses of these groups/roles/databases/grants (its connection's inspectAccess);
   * nothing to ask when they are empty.
   */
  async refusedByTarget(target: TargetEntity, what: Parameters<typeof inspectionOf>[1]): Promise<string[]> {
    const inspection = inspectionOf(target.type, what);
    if (!inspection) return [];
    return (await this.targets.connect(target)).inspectAccess(inspection);
  }

  /** The target's ephemeral policy as it is now (the default until an admin sets one). */
  async policyOf(em: EntityManager, targetId: string): Promise<EphemeralPolicy> {
    return { ...DEFAULT_EPHEMERAL_POLICY, ...(await this.store.storedPolicy(em, targetId)) };
  }

  private async decide(em: EntityManager, actor: Actor, id: string, decision: 'approve' | 'deny', dto: DecisionDto) {
    const row = await this.find(em, actor, id, true);
    const pending = { id, requesterId: row.requesterId, status: row.status, deadline: row.requestDeadline, digest: this.digest(row) };
    // the vendor who will use the account does not approve it either
    if (row.vendorId === actor.id) pending.requesterId = actor.id;
    const approvals = await recordDecision(em, EPHEMERAL_DECISIONS, pending, actor, decision, dto, this.clock.now(), 'REQUEST_NOT_PENDING');
    return { row, approvals };
  }

  /**
   * The claim's check of an approved request against the target's policy as it is NOW (an admin may have narrowed it
   * since the approval): access it no longer allows is 403 ACCESS_NOT_ALLOWED; a lifetime above its maximum is cut to
   * it; when it now needs more approvals than were given, the request goes back to `pending_approval` (committed) and
   * the claim answers 409 NOT_APPROVED. Resolves to the lifetime the account gets, or null when it needs approvals.
   */
  async checkAgainstPolicyInForce(tx: Tx, row: EphemeralAccountEntity, target: Pick<TargetEntity, 'type' | 'name'>): Promise<number | null> {
    const { em, audit } = tx;
    const type = target.type;
    const policy = await this.policyOf(em, row.targetId);
    const refused = staticRefusals(policy);
    if (refused.length) throw new DomainException('ACCESS_NOT_ALLOWED', `the target's ephemeral policy allows what no one-time account may have (${refused.slice(0, 5).join('; ')}); an admin must fix it`);
    checkAccess(type, policy, row.access);
    const approvals = await countApprovals(em, EPHEMERAL_DECISIONS, row.id, this.digest(row));
    if (approvals < policy.approvalsRequired) {
      await this.store.requireReapproval(em, row.id, policy.approvalsRequired);
      await audit({ type: 'ephemeral.reapproval_required', actor: null, subjectType: 'ephemeral_account', subjectId: row.id, details: { approvals, approvalsRequired: policy.approvalsRequired } });
      await this.notices.approvalRequested(tx, row, await this.notices.names(em, row, { target: target.name }));
      return null;
    }
    return Math.min(row.ttlSeconds, policy.maxTtlSeconds);
  }

  /** What an approval is bound to: target, vendor, requester, lifetime, justification and the access asked for. */
  digest(r: EphemeralAccountEntity): string {
    return requestDigest(this.keyring.auditKey(), 'ephemeral', [r.id, r.targetId, r.vendorId, r.requesterId, r.ttlSeconds, r.justification, r.access]);
  }
}

function seesAll(actor: Actor): boolean {
  return actor.roles.some((r) => SEES_ALL.includes(r));
}
