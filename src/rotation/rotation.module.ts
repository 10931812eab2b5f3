import { Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module';
import { TargetsModule } from '../targets/targets.module';
import { HeartbeatService } from './heartbeat.service';
import { RotationController } from './rotation.controller';
import { RotationStore } from './rotation-store';
import { RotationService } from './rotation.service';

/** The `rotations` table (RotationStore), write-ahead rotation and its recovery, the drift heartbeat. */
@Module({
  imports: [AccountsModule, TargetsModule],
  controllers: [RotationController],
  providers: [RotationStore, RotationService, HeartbeatService],
  exports: [RotationService, HeartbeatService],
})
export class RotationModule {}
