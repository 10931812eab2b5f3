import { Module } from '@nestjs/common';
import { TargetsModule } from '../targets/targets.module';
import { RotationController } from './rotation.controller';
import { RotationService } from './rotation.service';

@Module({ imports: [TargetsModule], controllers: [RotationController], providers: [RotationService], exports: [RotationService] })
export class RotationModule {}
