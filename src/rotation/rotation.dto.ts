import { z } from 'zod';
import { apiView, timestamp, typedSchema, uuid } from '../common/api-responses';
import type { RotationView as StoredRotationView } from './rotation-store';

/** A rotation as the API shows it: its history, no secrets (the store maps rows to it; the compiler keeps the two equal). */
export const RotationView = apiView(
  'RotationView',
  typedSchema<StoredRotationView>()(
    z.object({
      id: uuid(),
      reason: z.enum(['manual', 'scheduled', 'onboard', 'checkin', 'drift', 'retry']),
      status: z.enum(['pending', 'succeeded', 'failed']),
      errorCode: z.string().nullable().describe('A stable code when the rotation failed; never a secret.'),
      requestedBy: z.string().nullable().describe('The id of the user or service token that asked for it, or `system` (the vault itself).'),
      createdAt: timestamp(),
      finishedAt: timestamp().nullable(),
    }),
  ),
);

/** `POST /v1/accounts/:id/rotate` (202): the rotation to watch in the history. */
export const RotationRequested = apiView('RotationRequested', z.object({ rotationId: uuid() }));
