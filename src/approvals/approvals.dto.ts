import { IsString, Matches, MaxLength } from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, typedSchema, uuid } from '../common/api-responses';
import { Optional } from '../common/validation';
import { READABLE_TEXT, READABLE_TEXT_MESSAGE } from '../common/text';
import type { ApprovalView } from './approvals';

/** An approver's approve or deny body (checkouts and one-time accounts). */
export class DecisionDto {
  @Optional() @IsString() @MaxLength(1000) @Matches(READABLE_TEXT, { message: `comment ${READABLE_TEXT_MESSAGE}` }) comment?: string;
  /** The `requestDigest` of the request as the approver saw it: refused (409 REQUEST_CHANGED) if it no longer matches. */
  @Optional() @IsString() @Matches(/^[0-9a-f]{64}$/, { message: 'requestDigest must be 64 hex characters' }) requestDigest?: string;
}

/** An approver's decision as the API shows it (src/approvals/approvals.ts maps it; the compiler keeps this schema equal to it). */
export const ApprovalViewSchema = apiView(
  'ApprovalView',
  typedSchema<ApprovalView>()(
    z.object({
      approverId: uuid(),
      decision: z.enum(['approve', 'deny']),
      comment: z.string().nullable(),
      decidedAt: timestamp(),
      matchesRequest: z.boolean().describe('False when the request changed after this decision: it no longer counts.'),
    }),
  ),
);
