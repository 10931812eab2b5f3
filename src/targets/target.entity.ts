import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn, VersionColumn } from 'typeorm';
import type { TargetOptions } from '../connectors/connector.interface';
import type { TargetType } from '../crypto/password-generator';

@Entity({ name: 'targets' })
export class TargetEntity {
  @PrimaryColumn({ type: 'uuid' })
  id: string;

  @Column({ type: 'text', unique: true })
  name: string;

  @Column({ type: 'text' })
  type: TargetType;

  @Column({ type: 'text' })
  host: string;

  @Column({ type: 'integer' })
  port: number;

  @Column({ name: 'admin_username', type: 'text' })
  adminUsername: string;

  /** Encrypted JSON `{password?, privateKey?, passphrase?}`; bound to (targets, id, admin_secret). */
  @Column({ name: 'admin_secret', type: 'bytea' })
  adminSecret: Buffer;

  /** Which kinds of admin credential are stored (not the credentials): shown in responses. */
  @Column({ name: 'admin_credentials', type: 'text', array: true })
  adminCredentials: Array<'password' | 'privateKey'>;

  @Column({ type: 'jsonb', default: () => "'{}'" })
  options: TargetOptions;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;

  @VersionColumn({ type: 'integer' })
  version: number;
}
