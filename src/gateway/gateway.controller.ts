import { Body, Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Actor, ROLES } from '../common/actor';
import { ApiErrors } from '../common/api-errors';
import { ApiAnswer } from '../common/api-responses';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { UuidPipe } from '../common/validation';
import { ConnectDto, GatewayInfoView, GatewayTicketView, SessionTerminationView } from './gateway.dto';
import { GatewayService } from './gateway.service';

@ApiTags('SSH gateway')
@Controller('v1')
export class GatewayController {
  constructor(private readonly gateway: GatewayService) {}

  @ApiOperation({ summary: 'Where the SSH gateway listens, and its host key' })
  @ApiAnswer(GatewayInfoView)
  @Roles(...ROLES)
  @Get('gateway')
  info(): GatewayInfoView {
    return this.gateway.info();
  }

  @ApiOperation({
    summary: 'A single-use ticket (60 s) to connect through the SSH gateway with your active SSH checkout',
    description: 'With `publicKey`, the ticket is the SSH user name and only that key may use it; without, the ticket is the password.',
  })
  @ApiErrors('GATEWAY_DISABLED', 'CHECKOUT_NOT_ACTIVE', 'TARGET_UNSUPPORTED', 'TARGET_HOST_KEY_UNPINNED', 'WEBAUTHN_REQUIRED')
  @ApiAnswer(GatewayTicketView)
  @Roles('operator')
  @RequiresMfa()
  @Post('checkouts/:id/connect')
  connectCheckout(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: ConnectDto): Promise<GatewayTicketView> {
    return this.gateway.connectCheckout(actor, id, dto);
  }

  @ApiOperation({ summary: 'A single-use ticket (60 s) to connect through the SSH gateway with your active one-time SSH account' })
  @ApiErrors('GATEWAY_DISABLED', 'EPHEMERAL_NOT_ACTIVE', 'TARGET_UNSUPPORTED', 'TARGET_HOST_KEY_UNPINNED')
  @ApiAnswer(GatewayTicketView)
  @Roles('vendor')
  @RequiresMfa()
  @Post('ephemeral-accounts/:id/connect')
  connectEphemeral(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: ConnectDto): Promise<GatewayTicketView> {
    return this.gateway.connectEphemeral(actor, id, dto);
  }

  @ApiOperation({ summary: 'End a live SSH gateway session (closed within about a second)' })
  @ApiErrors('SESSION_ENDED')
  @ApiAnswer(SessionTerminationView)
  @Roles('admin')
  @RequiresMfa()
  @Post('sessions/:id/terminate')
  @HttpCode(200)
  terminate(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<SessionTerminationView> {
    return this.gateway.terminate(actor, id);
  }
}
