import { AccountEntity } from './accounts/account.entity';
import { CheckoutApprovalEntity, CheckoutEntity } from './checkouts/checkout.entity';
import { EphemeralAccountEntity, EphemeralApprovalEntity } from './ephemeral/ephemeral.entity';
import { AccessTokenEntity } from './identity/access-token.entity';
import { ServiceTokenEntity } from './identity/service-token.entity';
import { UserEntity } from './identity/user.entity';
import { OidcProviderEntity } from './identity/oidc/oidc-provider.entity';
import { WebAuthnChallengeEntity, WebAuthnCredentialEntity } from './identity/webauthn/webauthn.entity';
import { TargetEntity } from './targets/target.entity';

/** The TypeORM entities, listed at the composition root (each is owned by its module; see docs/architecture.md). */
export const ENTITIES = [UserEntity, AccessTokenEntity, ServiceTokenEntity, TargetEntity, AccountEntity, CheckoutEntity, CheckoutApprovalEntity, EphemeralAccountEntity, EphemeralApprovalEntity, WebAuthnCredentialEntity, WebAuthnChallengeEntity, OidcProviderEntity];
