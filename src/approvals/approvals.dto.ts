import { IsString, Matches, MaxLength } from 'class-validator';
import { Optional } from '../common/validation';

/** An approver's approve or deny body (checkouts and one-time accounts). */
export class DecisionDto {
  @Optional() @IsString() @MaxLength(1000) @Matches(/^[^\u0000-\u0008\u000b-\u001f\u007f]*$/, { message: 'comment must not contain control characters' }) comment?: string;
  /** The `requestDigest` of the request as the approver saw it: refused (409 REQUEST_CHANGED) if it no longer matches. */
  @Optional() @IsString() @Matches(/^[0-9a-f]{64}$/, { message: 'requestDigest must be 64 hex characters' }) requestDigest?: string;
}
