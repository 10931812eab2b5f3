import { Module } from '@nestjs/common';
import { TargetsModule } from '../targets/targets.module';
import { RotationController } from './rotation.controller';
import { HeartbeatService } from './heartbeat.service';
import { RotationService } from './rotation.service';

@Module({ imports: [TargetsModule], controllers: [RotationController], providers: [RotationService, HeartbeatService], exports: [RotationService, HeartbeatService] })
export class RotationModule {}
