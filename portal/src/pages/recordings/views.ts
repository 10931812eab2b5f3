import type { components } from '../../api/schema';

type Schemas = components['schemas'];

/** GET /v1/sessions, /v1/sessions/{id}: a session brokered by the SSH gateway, with its recording's state. */
export type GatewaySessionView = Schemas['SessionView'];
/** POST /v1/sessions/{id}/verify. */
export type RecordingVerifyView = Schemas['RecordingVerifyView'];
