import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn, VersionColumn } from 'typeorm';
import type { AccountStatus } from './account-states';
import type { AccountPolicy } from './policy';

export type { AccountStatus } from './account-states';

/** Where an account's password ciphertext is bound (associated data). */
export const accountSecretRef = (id: string) => ({ table: 'accounts', rowId: id, column: 'password_secret' });

@Entity({ name: 'accounts' })
export class AccountEntity {
  @PrimaryColumn({ type: 'uuid' })
  id: string;

  @Column({ name: 'target_id', type: 'uuid' })
  targetId: string;

  @Column({ type: 'text' })
  username: string;

  @Column({ type: 'text', default: 'available' })
  status: AccountStatus;

  /** Encrypted current password; bound to (accounts, id, password_secret). Null until onboarding sets one. */
  @Column({ name: 'password_secret', type: 'bytea', nullable: true })
  passwordSecret: Buffer | null;

  /** When the scheduler rotates it next (last rotation, or creation, plus the policy's interval). */
  @Column({ name: 'next_rotation_at', type: 'timestamptz', nullable: true })
  nextRotationAt: Date | null;

  /** Consecutive failed rotations; at the configured limit the account is needs_attention. */
  @Column({ name: 'rotation_failures', type: 'integer', default: 0 })
  rotationFailures: number;

  /** When the heartbeat last logged in with the stored password. */
  @Column({ name: 'last_verified_at', type: 'timestamptz', nullable: true })
  lastVerifiedAt: Date | null;

  @Column({ type: 'jsonb' })
  policy: AccountPolicy;

  /** Set at check-in when the policy rotates after a checkout: no new checkout until that rotation succeeds. */
  @Column({ name: 'must_rotate', type: 'boolean', default: false })
  mustRotate: boolean;

  @Column({ name: 'last_rotated_at', type: 'timestamptz', nullable: true })
  lastRotatedAt: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;

  @VersionColumn({ type: 'integer' })
  version: number;
}
