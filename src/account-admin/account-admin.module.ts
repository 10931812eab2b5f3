import { Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module';
import { CheckoutsModule } from '../checkouts/checkouts.module';
import { RotationModule } from '../rotation/rotation.module';
import { TargetsModule } from '../targets/targets.module';
import { AccountsController } from './accounts.controller';
import { AccountsService } from './accounts.service';

/** The accounts HTTP API (`/v1/accounts`): vaulting (onboarding through rotation), listing, policy, deletion (asking checkouts what it still owes). */
@Module({ imports: [AccountsModule, CheckoutsModule, TargetsModule, RotationModule], controllers: [AccountsController], providers: [AccountsService] })
export class AccountAdminModule {}
