import { IsString, Matches, MaxLength } from 'class-validator';
import { Optional } from '../common/validation';
import { READABLE_TEXT, READABLE_TEXT_MESSAGE } from '../common/text';

/** An approver's approve or deny body (checkouts and one-time accounts). */
export class DecisionDto {
  @Optional() @IsString() @MaxLength(1000) @Matches(READABLE_TEXT, { message: `comment ${READABLE_TEXT_MESSAGE}` }) comment?: string;
  /** The `requestDigest` of the request as the approver saw it: refused (409 REQUEST_CHANGED) if it no longer matches. */
  @Optional() @IsString() @Matches(/^[0-9a-f]{64}$/, { message: 'requestDigest must be 64 hex characters' }) requestDigest?: string;
}
