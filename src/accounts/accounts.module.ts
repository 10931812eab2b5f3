import { Module } from '@nestjs/common';
import { AccountStore } from './account-store';

/** The `accounts` table and its life cycle (AccountStore). The HTTP API is account-admin/; rotation and checkouts call the store. */
@Module({ providers: [AccountStore], exports: [AccountStore] })
export class AccountsModule {}
