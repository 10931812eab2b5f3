import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { Strategy } from 'passport-http-bearer';
import { Errors } from '../common/errors';
import { Actor } from '../common/actor';
import { IdentityService } from './identity.service';

/**
 * passport-http-bearer: `Authorization: Bearer <token>` → Actor. The library also reads `access_token`
 * from the query string and the body; a token in a URL ends up in logs and proxies, so only the header counts.
 */
@Injectable()
export class BearerStrategy extends PassportStrategy(Strategy, 'bearer') {
  constructor(private readonly identity: IdentityService) {
    super({ passReqToCallback: true });
  }

  validate(req: Request, token: unknown): Promise<Actor> {
    const header = req.headers.authorization;
    if (typeof token !== 'string' || typeof header !== 'string' || header.slice(7).trim() !== token || !/^bearer /i.test(header)) {
      throw Errors.unauthenticated('send the token in the Authorization header');
    }
    return this.identity.authenticate(token);
  }
}
