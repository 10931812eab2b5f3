import { Column, CreateDateColumn, Entity, PrimaryColumn, UpdateDateColumn } from 'typeorm';
import type { Role } from '../../common/actor';

/** An OpenID Connect identity provider the vault signs people in with (README "Single sign-on"). */
@Entity({ name: 'oidc_providers' })
export class OidcProviderEntity {
  /** [a-z0-9-]{1,40}: in the sign-in URLs and bound to each of its users. */
  @PrimaryColumn({ type: 'text' })
  name: string;

  @Column({ name: 'display_name', type: 'text' })
  displayName: string;

  @Column({ type: 'text' })
  issuer: string;

  @Column({ name: 'client_id', type: 'text' })
  clientId: string;

  /** Encrypted, bound to (oidc_providers, name, client_secret); write-only: no answer ever carries it. */
  @Column({ name: 'client_secret', type: 'bytea', nullable: true })
  clientSecret: Buffer | null;

  @Column({ type: 'text', array: true })
  scopes: string[];

  @Column({ name: 'groups_claim', type: 'text' })
  groupsClaim: string;

  /** IdP group → the vault roles its members get (the union over a user's groups). */
  @Column({ name: 'group_roles', type: 'jsonb' })
  groupRoles: Record<string, Role[]>;

  @Column({ type: 'boolean' })
  enabled: boolean;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
