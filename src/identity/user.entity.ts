import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';
import type { Role } from '../common/actor';

@Entity({ name: 'users' })
export class UserEntity {
  @PrimaryColumn({ type: 'uuid' })
  id: string;

  @Column({ type: 'text', unique: true })
  username: string;

  /** argon2id PHC string; never leaves the identity service. */
  @Column({ name: 'password_hash', type: 'text' })
  passwordHash: string;

  @Column({ type: 'text', array: true })
  roles: Role[];

  @Column({ type: 'boolean', default: false })
  disabled: boolean;

  /** Encrypted TOTP seed once enrollment is confirmed; bound to (users, id, mfa_secret). */
  @Column({ name: 'mfa_secret', type: 'bytea', nullable: true })
  mfaSecret: Buffer | null;

  /** Encrypted seed of an enrollment that has not been confirmed yet. */
  @Column({ name: 'mfa_pending_secret', type: 'bytea', nullable: true })
  mfaPendingSecret: Buffer | null;

  @Column({ name: 'mfa_enrolled_at', type: 'timestamptz', nullable: true })
  mfaEnrolledAt: Date | null;

  /** The last TOTP time step accepted for this user: that step and older ones are burned. */
  @Column({ name: 'mfa_last_step', type: 'bigint', default: 0 })
  mfaLastStep: string;

  /** Where the user's notifications go (null: nowhere). */
  @Column({ type: 'text', nullable: true })
  email: string | null;

  /** Optional notification kinds the user does not want (events.ts OPTIONAL_TYPES). */
  @Column({ name: 'muted_notifications', type: 'text', array: true, default: () => "'{}'" })
  mutedNotifications: string[];

  /** The OpenID Connect provider this user signs in with (null: a local user), and their subject there (never a name or address). */
  @Column({ name: 'oidc_provider', type: 'text', nullable: true })
  oidcProvider: string | null;

  @Column({ name: 'oidc_subject', type: 'text', nullable: true })
  oidcSubject: string | null;

  /** The user may sign in with their password (false for OIDC-created users; VAULT_PASSWORD_LOGIN=disabled turns it off for all). */
  @Column({ name: 'password_login', type: 'boolean', default: true })
  passwordLogin: boolean;

  /** The bootstrap admin: may always sign in with a password (audited `auth.break_glass` and alerted when it is off for everyone). */
  @Column({ name: 'break_glass', type: 'boolean', default: false })
  breakGlass: boolean;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
