import { Module } from '@nestjs/common';
import { TargetsModule } from '../targets/targets.module';
import { AccountStore } from './account-store';

/** The `accounts` table and its life cycle (AccountStore). The HTTP API is account-admin/; rotation and checkouts call the store. */
@Module({ imports: [TargetsModule], providers: [AccountStore], exports: [AccountStore] })
export class AccountsModule {}
