import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A user's security key or passkey (migrations/1767000000000-WebAuthn.ts). All SQL on it is in webauthn-store.ts. */
@Entity({ name: 'webauthn_credentials' })
export class WebAuthnCredentialEntity {
  @PrimaryColumn({ type: 'uuid' })
  id: string;

  @Column({ name: 'user_id', type: 'uuid' })
  userId: string;

  /** The authenticator's credential id, base64url. */
  @Column({ name: 'credential_id', type: 'text', unique: true })
  credentialId: string;

  /** COSE public key. */
  @Column({ name: 'public_key', type: 'bytea' })
  publicKey: Buffer;

  /** The last signature counter seen: a lower one later means a cloned authenticator. */
  @Column({ name: 'sign_count', type: 'bigint', default: 0 })
  signCount: string;

  @Column({ type: 'text', array: true, default: () => "'{}'" })
  transports: string[];

  @Column({ type: 'text' })
  name: string;

  @Column({ type: 'text' })
  aaguid: string;

  @Column({ name: 'backed_up', type: 'boolean', default: false })
  backedUp: boolean;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true })
  lastUsedAt: Date | null;

  /** A clone was suspected: refused until removed. */
  @Column({ name: 'flagged_at', type: 'timestamptz', nullable: true })
  flaggedAt: Date | null;
}

/** A challenge handed out for one purpose and binding, used once. */
@Entity({ name: 'webauthn_challenges' })
export class WebAuthnChallengeEntity {
  @PrimaryColumn({ type: 'uuid' })
  id: string;

  @Column({ name: 'user_id', type: 'uuid' })
  userId: string;

  @Column({ type: 'text', unique: true })
  challenge: string;

  @Column({ type: 'text' })
  purpose: 'register' | 'login' | 'step_up';

  /** step_up: a keyed HMAC (hex) of the action's SHA-256; login: `login`; register: `register:first` or `register:step_up`. */
  @Column({ type: 'text' })
  binding: string;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt: Date;

  @Column({ name: 'used_at', type: 'timestamptz', nullable: true })
  usedAt: Date | null;

  /** Login: the password attempt (throttle reservation) of the sign-in that asked, given back when the key answers. */
  @Column({ type: 'jsonb', nullable: true })
  attempt: object | null;
}
