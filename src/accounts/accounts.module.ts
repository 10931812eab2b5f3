import { Module } from '@nestjs/common';
import { RotationModule } from '../rotation/rotation.module';
import { TargetsModule } from '../targets/targets.module';
import { AccountsController } from './accounts.controller';
import { AccountsService } from './accounts.service';

@Module({ imports: [TargetsModule, RotationModule], controllers: [AccountsController], providers: [AccountsService], exports: [AccountsService] })
export class AccountsModule {}
