/**
 * The answer shapes the admin and auditor pages read: the generated schema's (portal/src/api/schema.d.ts, from the
 * vault's OpenAPI document), so a changed API fails the portal's type-check here.
 */
import type { components } from '../../api/schema';

type Schemas = components['schemas'];

export type AdminTargetView = Schemas['TargetView'];
export type TargetType = AdminTargetView['type'];
export type TargetOptions = Schemas['TargetOptions'];
export type Capability = Schemas['Capability'];
export type VerifyView = Schemas['VerifyView'];
export type RotationView = Schemas['RotationView'];
export type UserView = Schemas['UserView'];
export type ServiceTokenView = Schemas['ServiceTokenView'];
export type AuditEventView = Schemas['AuditEventView'];
export type AuditVerifyView = Schemas['AuditVerifyView'];
export type ChannelView = Schemas['NotificationChannelView'];
export type ChannelKind = ChannelView['kind'];
export type RouteView = Schemas['NotificationRouteView'];
export type DeliveryView = Schemas['NotificationDeliveryView'];
export type DeliveryStatus = DeliveryView['status'];
export type UpdateUserBody = Schemas['UpdateUserDto'];
export type OidcProviderView = Schemas['OidcProviderView'];
export type WebauthnCredentialView = Schemas['WebAuthnCredentialView'];
