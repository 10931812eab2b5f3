import { IsObject, IsString, Matches, MaxLength, MinLength } from 'class-validator';
import { z } from 'zod';
import { apiView, timestamp, typedSchema, uuid } from '../common/api-responses';
import { Optional } from '../common/validation';
import { ROLES } from '../common/actor';
import type { BrowserSessionView } from './browser-sessions';
import type { EnrollmentConfirmed } from './mfa.service';

export class LoginDto {
  @IsString() @MinLength(1) @MaxLength(128) username: string;
  @IsString() @MinLength(1) @MaxLength(1024) password: string;
  @Optional() @IsString() @Matches(/^\d{6}$/, { message: 'code must be 6 digits' }) code?: string;
  /** A security key's answer (AuthenticationResponseJSON, the object) to the `webauthn` challenge of 401 MFA_REQUIRED. */
  @Optional() @IsObject() assertion?: Record<string, unknown>;
}

export const LoginResponse = apiView(
  'LoginResponse',
  z.object({
    accessToken: z.string().describe('Send it as `Authorization: Bearer <accessToken>`.'),
    expiresAt: timestamp(),
    mfaEnrollmentRequired: z.boolean().describe('True until the user has enrolled TOTP: the token can then only enroll (and read /v1/me).'),
  }),
);
export type LoginResponse = z.output<typeof LoginResponse>;

export const MeView = apiView(
  'MeView',
  z.object({
    id: uuid(),
    username: z.string(),
    roles: z.array(z.enum(ROLES)),
    mfaEnrolled: z.boolean().describe('The user has a second factor: TOTP or a security key.'),
    mfaMethods: z.array(z.enum(['totp', 'webauthn'])).describe('The second factors the user has (none for a service token).'),
    kind: z.enum(['user', 'service']),
    email: z.string().nullable().describe("Where the vault sends this person's notifications (null: nowhere; always null for a service token)."),
    mutedNotifications: z.array(z.string()).describe('The optional notification kinds this person muted.'),
  }),
);
export type MeView = z.output<typeof MeView>;

/** `POST /v1/me/mfa/totp`: the new secret, to show once (as a QR code of the URI). */
export const TotpEnrollmentView = apiView('TotpEnrollmentView', z.object({ secret: z.string().describe('base32'), otpauthUri: z.string() }));

/** A browser session of the web portal (src/identity/browser-sessions.ts; the compiler keeps this schema equal to it). */
export const BrowserSessionViewSchema = apiView(
  'BrowserSessionView',
  typedSchema<BrowserSessionView>()(
    z.object({
      csrfToken: z.string().describe('Send it as `X-CSRF-Token` with every request that changes something; keep it in memory only.'),
      expiresAt: timestamp().describe('The absolute end of the session.'),
      idleTimeoutSeconds: z.number().int(),
      mfaEnrollmentRequired: z.boolean(),
      user: MeView,
    }),
  ),
);

/** `POST /v1/me/mfa/totp/confirm` with a bearer token: the fresh token (src/identity/mfa.service.ts; kept equal by the compiler). */
const EnrollmentConfirmedView = apiView(
  'EnrollmentConfirmed',
  typedSchema<EnrollmentConfirmed>()(
    z.object({
      mfaEnrolled: z.literal(true),
      accessToken: z.string().describe('The new session: every earlier token of the user has ended.'),
      expiresAt: timestamp(),
    }),
  ),
);

/** `POST /v1/me/mfa/totp/confirm`: a fresh bearer token, or from the portal a fresh browser session (the cookie is set). */
export const EnrollmentAnswer = z.union([
  EnrollmentConfirmedView,
  apiView('BrowserEnrollmentConfirmed', BrowserSessionViewSchema.extend({ mfaEnrolled: z.literal(true) })),
]);
