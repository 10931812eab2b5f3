/**
 * The REST API's response shapes, in one place for the server and its command-line client (vaultctl imports types
 * from here only, and only as types: nothing of the server is loaded by the client). Each view is defined beside the
 * code that maps a row to it, in the module that owns the row.
 */
export type { ServiceTokenView, UserView } from './identity/users.dto';
export type { MeView } from './identity/identity.dto';
export type { AccountView } from './account-admin/accounts.dto';
export type { AuditEventView } from './audit/audit.dto';
export type { TargetView, VerifyView } from './targets/targets.dto';
export type { ApprovalView } from './approvals/approvals';
export type { RotationView } from './rotation/rotation-store';
export type { CheckoutView, CredentialView } from './checkouts/checkouts.dto';
export type { ClaimView, EphemeralView } from './ephemeral/ephemeral.dto';
export type { NotificationChannelView, NotificationDeliveryView, NotificationRouteView, NotificationTestView } from './notifications/notifications.dto';
export type { GatewayInfoView, GatewayTicketView, SessionTerminationView } from './gateway/gateway.dto';
export type { RecordingVerifyView, SessionView } from './gateway/recording/sessions.dto';
export type { Page } from './common/pagination';
