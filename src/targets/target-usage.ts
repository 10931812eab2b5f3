import { EntityManager } from 'typeorm';

/**
 * What another module keeps on a target, answered by that module (the owner of its table): targets is a lower layer
 * and never reads the accounts or one-time account tables itself. Owners register at init
 * (`TargetsService.registerUsage`); the targets module asks them before it deletes or moves a target, or takes a new
 * admin.
 */
export interface TargetUsage {
  /** Checked in this order (lowest first): accounts before one-time accounts, so the first refusal is the same every time. */
  order: number;
  /** How many there are on the target (in the caller's transaction). */
  count(em: EntityManager, targetId: string): Promise<number>;
  /** Why the target cannot be deleted while `n` exist. */
  deleteRefusal(n: number): string;
  /** Set when these live where they were created, so moving the target would leave them behind: why it cannot move. */
  moveRefusal?: string;
  /** Set when a username can be one of them: whether `username` is (the admin must not be a rotated account). */
  hasUsername?(em: EntityManager, targetId: string, username: string): Promise<boolean>;
}
