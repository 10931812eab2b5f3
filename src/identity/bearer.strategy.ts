import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { Strategy } from 'passport-http-bearer';
import { Actor } from './actor';
import { IdentityService } from './identity.service';

/** passport-http-bearer: `Authorization: Bearer <token>` → Actor. */
@Injectable()
export class BearerStrategy extends PassportStrategy(Strategy, 'bearer') {
  constructor(private readonly identity: IdentityService) {
    super();
  }

  validate(token: string): Promise<Actor> {
    return this.identity.authenticate(token);
  }
}
