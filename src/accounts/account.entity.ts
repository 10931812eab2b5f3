import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn, VersionColumn } from 'typeorm';
import type { AccountPolicy } from './policy';

export type AccountStatus = 'available' | 'checked_out' | 'rotating' | 'needs_attention';

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

  /** Encrypted current password; bound to (accounts, id, password_secret). */
  @Column({ name: 'password_secret', type: 'bytea' })
  passwordSecret: Buffer;

  @Column({ type: 'jsonb' })
  policy: AccountPolicy;

  @Column({ name: 'last_rotated_at', type: 'timestamptz', nullable: true })
  lastRotatedAt: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;

  @VersionColumn({ type: 'integer' })
  version: number;
}
