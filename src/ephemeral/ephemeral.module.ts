import { Module } from '@nestjs/common';
import { RotationModule } from '../rotation/rotation.module';
import { TargetsModule } from '../targets/targets.module';
import { EphemeralController, EphemeralPolicyController } from './ephemeral.controller';
import { EphemeralProvisioner } from './ephemeral-provisioner.service';
import { EphemeralService } from './ephemeral.service';

@Module({
  imports: [TargetsModule, RotationModule],
  controllers: [EphemeralController, EphemeralPolicyController],
  providers: [EphemeralService, EphemeralProvisioner],
  exports: [EphemeralProvisioner],
})
export class EphemeralModule {}
