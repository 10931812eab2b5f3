import { IsIn, IsObject, IsString, IsUUID, Matches, MaxLength, MinLength } from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, uuid } from '../../common/api-responses';
import { Optional } from '../../common/validation';
import { BrowserSessionViewSchema } from '../identity.dto';

/** A security key as its owner and admins see it (never the public key or the raw credential id). */
export const WebAuthnCredentialView = apiView(
  'WebAuthnCredentialView',
  z.object({
    id: uuid(),
    name: z.string(),
    createdAt: timestamp(),
    lastUsedAt: timestamp().nullable(),
    flagged: z.boolean().describe('A cloned authenticator was suspected (its signature counter went back): refused until removed.'),
    backedUp: z.boolean().describe('A synced passkey (backed up by its provider), as the authenticator said at registration.'),
  }),
);
export type WebAuthnCredentialView = z.output<typeof WebAuthnCredentialView>;

const options = (what: string) => z.looseObject({ challenge: z.string() }).describe(what);

export const RegistrationStartView = apiView(
  'WebAuthnRegistrationStart',
  z.object({
    challengeId: uuid(),
    options: options('PublicKeyCredentialCreationOptionsJSON: pass to @simplewebauthn/browser startRegistration({optionsJSON}) (user verification required).'),
  }),
);
export type RegistrationStartView = z.output<typeof RegistrationStartView>;

export const StepUpChallengeView = apiView(
  'WebAuthnStepUpChallenge',
  z.object({
    challengeId: uuid(),
    options: options("PublicKeyCredentialRequestOptionsJSON: pass to startAuthentication({optionsJSON}); send the result, as base64url of its JSON, in X-MFA-Assertion with exactly the method, path and body given here."),
    expiresAt: timestamp(),
  }),
);
export type StepUpChallengeView = z.output<typeof StepUpChallengeView>;

/** The challenge a password sign-in answers with (in 401 MFA_REQUIRED) for a user with a security key. */
export interface LoginChallenge {
  challengeId: string;
  options: { challenge: string } & Record<string, unknown>;
}

export class ConfirmRegistrationDto {
  @IsUUID() challengeId: string;
  @IsString() @MinLength(1) @MaxLength(64) @Matches(/^[^\p{Cc}]+$/u, { message: 'name must not contain control characters' }) name: string;
  /** RegistrationResponseJSON as startRegistration answers it. */
  @IsObject() response: Record<string, unknown>;
}

export class StepUpChallengeDto {
  @IsIn(['POST', 'PUT', 'PATCH', 'DELETE']) method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  @IsString() @MaxLength(512) @Matches(/^\/v1\/[^?#\s]*$/, { message: 'path must be the request path (/v1/…) without a query' }) path: string;
  /** The JSON body the action will send (absent: none). */
  @Optional() @IsObject() body?: Record<string, unknown>;
}

/** The fresh login token or browser session a first factor's registration answers with (null: the user had one already). */
const NewBearerSession = apiView(
  'WebAuthnNewBearerSession',
  z.object({ accessToken: z.string().describe('Every earlier token of the user has ended.'), expiresAt: timestamp() }),
);

export const RegistrationConfirmedView = apiView(
  'WebAuthnRegistrationConfirmed',
  z.object({
    credential: WebAuthnCredentialView,
    newSession: z
      .union([NewBearerSession, BrowserSessionViewSchema, z.null()])
      .describe("Not null when the key is the user's first second factor: every earlier token and session ended; a bearer client gets a new token, the portal a new session (cookie set, CSRF token here)."),
  }),
);
export type RegistrationConfirmedView = z.output<typeof RegistrationConfirmedView>;

