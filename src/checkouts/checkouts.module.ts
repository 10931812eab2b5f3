import { Module } from '@nestjs/common';
import { AccountsModule } from '../accounts/accounts.module';
import { IdentityModule } from '../identity/identity.module';
import { RotationModule } from '../rotation/rotation.module';
import { TargetsModule } from '../targets/targets.module';
import { ApprovalsService } from './approvals.service';
import { CheckoutLifecycleService } from './checkout-lifecycle.service';
import { CheckoutNotices } from './checkout-notices';
import { CheckoutStore } from './checkout-store';
import { CheckoutsController } from './checkouts.controller';
import { CheckoutsService } from './checkouts.service';

@Module({
  imports: [AccountsModule, TargetsModule, RotationModule, IdentityModule],
  controllers: [CheckoutsController],
  providers: [CheckoutStore, CheckoutsService, ApprovalsService, CheckoutLifecycleService, CheckoutNotices],
  exports: [CheckoutsService, CheckoutLifecycleService, CheckoutStore, CheckoutNotices],
})
export class CheckoutsModule {}
