import { Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module';
import { CheckoutsModule } from '../checkouts/checkouts.module';
import { EphemeralModule } from '../ephemeral/ephemeral.module';
import { TargetsModule } from '../targets/targets.module';
import { GatewayController } from './gateway.controller';
import { GatewayGrants } from './gateway-grants';
import { GatewayService } from './gateway.service';
import { GatewayStore } from './gateway-store';
import { RecordingModule } from './recording/recording.module';
import { GatewaySessionTracker } from './session-tracker';
import { SshGatewayServer } from './ssh-gateway.server';

/** The SSH gateway (issue 16): tickets over HTTP, the ssh2 server, session ending; recordings through RecordingModule. */
@Module({
  imports: [AccountsModule, TargetsModule, CheckoutsModule, EphemeralModule, RecordingModule],
  controllers: [GatewayController],
  providers: [GatewayStore, GatewayGrants, GatewayService, GatewaySessionTracker, SshGatewayServer],
  exports: [GatewayStore, SshGatewayServer],
})
export class GatewayModule {}
