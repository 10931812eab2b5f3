import { Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentActor, Roles } from '../common/auth.decorators';
import { UuidPipe } from '../common/validation';
import { Actor } from '../common/actor';
import { ApiErrors } from '../common/api-errors';
import { ApiAnswer, pageOf } from '../common/api-responses';
import { Page } from '../common/pagination';
import { RotationView } from './rotation-store';
import { RotationRequested, RotationView as RotationViewSchema } from './rotation.dto';
import { RotationService } from './rotation.service';

@ApiTags('Accounts')
@Controller('v1/accounts')
export class RotationController {
  constructor(private readonly rotation: RotationService) {}

  /** 202: the new password is committed as pending; the target is changed in the background. */
  @ApiOperation({ summary: "Rotate an account's password now (202: runs in the background)" })
  @ApiErrors('ACCOUNT_CHECKED_OUT', 'ACCOUNT_ROTATING')
  @ApiAnswer(RotationRequested)
  @Roles('admin', 'scheduler')
  @Post(':id/rotate')
  @HttpCode(202)
  rotate(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<{ rotationId: string }> {
    return this.rotation.request(actor, id);
  }

  /** History without secrets. */
  @ApiOperation({ summary: "An account's rotation history (no secrets)" })
  @ApiAnswer(pageOf(RotationViewSchema))
  @Roles('admin', 'scheduler', 'auditor')
  @Get(':id/rotations')
  async history(@Param('id', UuidPipe) id: string): Promise<Page<RotationView>> {
    return { items: await this.rotation.history(id), nextCursor: null };
  }
}
