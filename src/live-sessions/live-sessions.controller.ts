import { Controller, Get, HttpCode, Param, PipeTransform, Post } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Actor } from '../common/actor';
import { ApiErrors, TARGET_FAILURES } from '../common/api-errors';
import { ApiAnswer } from '../common/api-responses';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { DomainException } from '../common/errors';
import { UuidPipe } from '../common/validation';
import { SESSION_ID_PATTERNS } from '../connectors/connector.interface';
import { LiveSessionsView, SessionTerminatedView } from './live-sessions.dto';
import { LiveSessionsService } from './live-sessions.service';

/** `:sessionId` of some target type's form, else 400 SESSION_ID_INVALID — before the step-up code is burned. */
class SessionIdPipe implements PipeTransform<unknown, string> {
  transform(value: unknown): string {
    if (typeof value !== 'string' || !Object.values(SESSION_ID_PATTERNS).some((p) => p.test(value))) {
      throw new DomainException('SESSION_ID_INVALID', 'sessionId: not a session id (ssh-<pid>-<16 hex>, pg-<pid>-<µs>, my-<id>)');
    }
    return value;
  }
}

@ApiTags('Live sessions')
@Controller('v1')
export class LiveSessionsController {
  constructor(private readonly sessions: LiveSessionsService) {}

  @ApiOperation({ summary: "The live sessions of a checkout's account on its target now (none unless the checkout is active)" })
  @ApiErrors(...TARGET_FAILURES, 'TARGET_CREDENTIAL_UNREADABLE')
  @ApiAnswer(LiveSessionsView)
  @Roles('operator', 'admin', 'approver', 'auditor')
  @Get('checkouts/:id/sessions')
  forCheckout(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<LiveSessionsView> {
    return this.sessions.forCheckout(actor, id);
  }

  @ApiOperation({ summary: "The live sessions of a one-time account on its target now (none unless it is active)" })
  @ApiErrors(...TARGET_FAILURES, 'TARGET_CREDENTIAL_UNREADABLE')
  @ApiAnswer(LiveSessionsView)
  @Roles('vendor', 'operator', 'admin', 'approver', 'auditor')
  @Get('ephemeral-accounts/:id/sessions')
  forEphemeral(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<LiveSessionsView> {
    return this.sessions.forEphemeral(actor, id);
  }

  @ApiOperation({ summary: 'The live sessions of every account the vault manages on a target (never its admin\'s)' })
  @ApiErrors(...TARGET_FAILURES, 'TARGET_CREDENTIAL_UNREADABLE')
  @ApiAnswer(LiveSessionsView)
  @Roles('admin')
  @Get('targets/:id/sessions')
  forTarget(@Param('id', UuidPipe) id: string): Promise<LiveSessionsView> {
    return this.sessions.forTarget(id);
  }

  @ApiOperation({ summary: 'End one live session of an account the vault manages on the target (audited session.terminated)' })
  @ApiErrors('SESSION_ID_INVALID', 'SESSION_NOT_FOUND', 'TARGET_CREDENTIAL_UNREADABLE', ...TARGET_FAILURES)
  @ApiAnswer(SessionTerminatedView)
  @Roles('admin')
  @RequiresMfa()
  @HttpCode(200)
  @Post('targets/:id/sessions/:sessionId/terminate')
  terminate(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Param('sessionId', new SessionIdPipe()) sessionId: string): Promise<SessionTerminatedView> {
    return this.sessions.terminate(actor, id, sessionId);
  }
}
