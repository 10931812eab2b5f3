import { Module } from '@nestjs/common';
import { IdentityModule } from '../identity/identity.module';
import { TargetsModule } from '../targets/targets.module';
import { EphemeralController, EphemeralPolicyController } from './ephemeral.controller';
import { EphemeralNotices } from './ephemeral-notices';
import { EphemeralProvisioner } from './ephemeral-provisioner.service';
import { EphemeralService } from './ephemeral.service';
import { EphemeralStore } from './ephemeral-store';

@Module({
  imports: [TargetsModule, IdentityModule],
  controllers: [EphemeralController, EphemeralPolicyController],
  providers: [EphemeralStore, EphemeralService, EphemeralProvisioner, EphemeralNotices],
  exports: [EphemeralProvisioner, EphemeralStore, EphemeralNotices, EphemeralService],
})
export class EphemeralModule {}
