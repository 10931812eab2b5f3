import { IsString, Matches, MaxLength, MinLength } from 'class-validator';
import { Optional } from '../common/validation';
import type { Role } from '../common/actor';

export class LoginDto {
  @IsString() @MinLength(1) @MaxLength(128) username: string;
  @IsString() @MinLength(1) @MaxLength(1024) password: string;
  @Optional() @IsString() @Matches(/^\d{6}$/, { message: 'code must be 6 digits' }) code?: string;
}

export interface LoginResponse {
  accessToken: string;
  expiresAt: string;
  mfaEnrollmentRequired: boolean;
}

export interface MeView {
  id: string;
  username: string;
  roles: Role[];
  mfaEnrolled: boolean;
  kind: 'user' | 'service';
  /** Where the vault sends this person's notifications (null: nowhere; always null for a service token). */
  email: string | null;
  /** The optional notification kinds this person muted. */
  mutedNotifications: string[];
}
