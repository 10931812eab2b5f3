import { IsBoolean, IsIn, IsInt, IsOptional, IsString, IsUUID, Matches, Max, MaxLength, Min, MinLength } from 'class-validator';
import { z } from 'zod';
import { mapApprovals } from '../approvals/approvals';
import { ApprovalViewSchema } from '../approvals/approvals.dto';
import { apiView, timestamp, uuid } from '../common/api-responses';
import { PageQuery } from '../common/pagination';
import { READABLE_TEXT, READABLE_TEXT_MESSAGE } from '../common/text';
import { Optional } from '../common/validation';
import { CheckoutApprovalEntity, CheckoutEntity, CheckoutStatus } from './checkout.entity';
import { CHECKOUT_STATUSES } from './checkout-states';

const WEEK = 7 * 24 * 3600;
/** Free text for people (justifications, comments): what approvers read is what was stored. */
const TEXT = READABLE_TEXT;
const TEXT_MESSAGE = { message: READABLE_TEXT_MESSAGE };

export class CreateCheckoutDto {
  @IsUUID() accountId: string;
  /** Why the operator needs the account; shown to approvers and kept in the audit log. */
  @IsString() @MinLength(3) @MaxLength(1000) @Matches(TEXT, TEXT_MESSAGE) justification: string;
  /** Lease length; default the policy's checkoutTtlSeconds, at most its maxCheckoutTtlSeconds. */
  @Optional() @IsInt() @Min(60) @Max(WEEK) ttlSeconds?: number;
  /** Emergency: skip approvals where the account's policy allows it. Shorter, flagged, reviewed afterwards. */
  @Optional() @IsBoolean() breakGlass?: boolean;
}

export class ExtendDto {
  /** Added to the current expiry; the lease may not outgrow the policy's maximum from activation. */
  @IsInt() @Min(60) @Max(WEEK) ttlSeconds: number;
}

export class RevokeDto {
  @Optional() @IsString() @MaxLength(1000) @Matches(TEXT, TEXT_MESSAGE) reason?: string;
}

export class ReviewDto {
  @IsString() @MinLength(1) @MaxLength(1000) @Matches(TEXT, TEXT_MESSAGE) comment: string;
}

export class CheckoutListQuery extends PageQuery {
  @IsOptional() @IsIn(CHECKOUT_STATUSES) status?: CheckoutStatus;
  @IsOptional() @IsUUID() accountId?: string;
  @IsOptional() @IsUUID() requesterId?: string;
  @IsOptional() @IsIn(['true', 'false']) breakGlass?: 'true' | 'false';
  /** Break-glass checkouts not yet reviewed: `?breakGlass=true&reviewed=false`. */
  @IsOptional() @IsIn(['true', 'false']) reviewed?: 'true' | 'false';
}

export const CredentialView = apiView(
  'CredentialView',
  z.object({ username: z.string(), password: z.string(), host: z.string(), port: z.number().int() }),
  'What leaves the vault only in the answer to an MFA-verified checkout or reveal.',
);
export type CredentialView = z.output<typeof CredentialView>;

export const CheckoutView = apiView(
  'CheckoutView',
  z.object({
    id: uuid(),
    accountId: uuid(),
    requesterId: uuid(),
    requesterName: z.string().nullable().describe("The requester's username (null if the user was removed)."),
    status: z.enum(CHECKOUT_STATUSES),
    justification: z.string(),
    ttlSeconds: z.number().int(),
    breakGlass: z.boolean(),
    approvalsRequired: z.number().int(),
    approvals: z.array(ApprovalViewSchema),
    requestDigest: z.string().describe('HMAC of what approvers approve (account, requester, ttl, justification, break-glass).'),
    requestedAt: timestamp(),
    expiresAt: timestamp().nullable().describe('Pending: when the request lapses; active: when the lease ends; ended: when it ended or would have.'),
    approvalDeadline: timestamp().nullable(),
    activatedAt: timestamp().nullable(),
    endedAt: timestamp().nullable(),
    endedBy: z.string().nullable(),
    endReason: z.enum(['checked_in', 'expired', 'revoked', 'denied', 'approval_timeout', 'requester_disabled', 'requester_role_removed']).nullable(),
    rotationId: uuid().nullable(),
    review: z.object({ reviewedAt: timestamp(), reviewedBy: uuid().nullable(), comment: z.string().nullable() }).nullable().describe('Break-glass: the after-the-fact review.'),
  }),
  'A checkout; never contains the credential (only the create answer adds it).',
);
export type CheckoutView = z.output<typeof CheckoutView>;

/** `POST /v1/checkouts`: the checkout, with the credential when it is active at once. */
export const CheckoutCreatedView = apiView(
  'CheckoutCreatedView',
  CheckoutView.extend({ credential: CredentialView.optional().describe('When the checkout is active at once.') }),
  'The checkout, with the credential when it is active at once.',
);

/** `POST /v1/checkouts/:id/reveal`. */
export const RevealView = apiView('RevealView', z.object({ credential: CredentialView, expiresAt: timestamp() }));

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function mapCheckout(c: CheckoutEntity, approvals: CheckoutApprovalEntity[], requestDigest: string, requesterName: string | null): CheckoutView {
  return {
    id: c.id,
    accountId: c.accountId,
    requesterId: c.requesterId,
    requesterName,
    status: c.status,
    justification: c.justification,
    ttlSeconds: c.ttlSeconds,
    breakGlass: c.breakGlass,
    approvalsRequired: c.approvalsRequired,
    approvals: mapApprovals(approvals, requestDigest),
    requestDigest,
    requestedAt: c.requestedAt.toISOString(),
    expiresAt: iso(c.status === 'pending_approval' ? c.approvalDeadline : c.expiresAt),
    approvalDeadline: iso(c.approvalDeadline),
    activatedAt: iso(c.activatedAt),
    endedAt: iso(c.endedAt),
    endedBy: c.endedBy,
    endReason: c.endReason,
    rotationId: c.rotationId,
    review: c.reviewedAt ? { reviewedAt: c.reviewedAt.toISOString(), reviewedBy: c.reviewedBy, comment: c.reviewComment } : null,
  };
}
