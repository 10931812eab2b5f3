import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/**
 * A login token: a bearer token (`pvt_`, answered once by POST /v1/auth/login) or a browser session (`pvb_`, only ever
 * in the HttpOnly cookie). Only SHA-256 digests are stored.
 */
@Entity({ name: 'access_tokens' })
export class AccessTokenEntity {
  @PrimaryColumn({ type: 'uuid' })
  id: string;

  @Column({ name: 'user_id', type: 'uuid' })
  userId: string;

  @Column({ name: 'token_hash', type: 'bytea', unique: true })
  tokenHash: Buffer;

  @Column({ type: 'text', default: 'bearer' })
  kind: 'bearer' | 'browser';

  /** Browser sessions: SHA-256 of the session's CSRF token (X-CSRF-Token). */
  @Column({ name: 'csrf_hash', type: 'bytea', nullable: true })
  csrfHash: Buffer | null;

  /** Browser sessions: the last request (the idle timeout counts from here). */
  @Column({ name: 'last_seen_at', type: 'timestamptz', nullable: true })
  lastSeenAt: Date | null;

  /** The absolute end. */
  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt: Date;

  @Column({ name: 'revoked_at', type: 'timestamptz', nullable: true })
  revokedAt: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
