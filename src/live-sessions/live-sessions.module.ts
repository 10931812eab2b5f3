import { Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module';
import { CheckoutsModule } from '../checkouts/checkouts.module';
import { EphemeralModule } from '../ephemeral/ephemeral.module';
import { TargetsModule } from '../targets/targets.module';
import { LiveSessionsController } from './live-sessions.controller';
import { LiveSessionsService } from './live-sessions.service';

/** Live sessions on targets (issue 16): read through the connectors, one ended by an admin. Owns no table. */
@Module({
  imports: [AccountsModule, CheckoutsModule, EphemeralModule, TargetsModule],
  controllers: [LiveSessionsController],
  providers: [LiveSessionsService],
})
export class LiveSessionsModule {}
