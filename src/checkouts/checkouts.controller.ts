import { Body, Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { DecisionDto } from '../approvals/approvals.dto';
import { Actor } from '../identity/actor';
import { ApprovalsService } from './approvals.service';
import { CheckoutLifecycleService } from './checkout-lifecycle.service';
import { CheckoutListQuery, CheckoutView, CreateCheckoutDto, CredentialView, ExtendDto, ReviewDto, RevokeDto } from './checkouts.dto';
import { CheckoutsService } from './checkouts.service';

@Controller('v1/checkouts')
export class CheckoutsController {
  constructor(
    private readonly checkouts: CheckoutsService,
    private readonly approvals: ApprovalsService,
    private readonly lifecycle: CheckoutLifecycleService,
  ) {}

  @Roles('operator')
  @RequiresMfa()
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateCheckoutDto): Promise<CheckoutView & { credential?: CredentialView }> {
    return this.checkouts.request(actor, dto);
  }

  /** Operators see their own; admins, approvers and auditors see all. */
  @Roles('operator', 'admin', 'approver', 'auditor')
  @Get()
  list(@CurrentActor() actor: Actor, @Query() q: CheckoutListQuery): Promise<Page<CheckoutView>> {
    return this.checkouts.list(actor, q);
  }

  @Roles('operator', 'admin', 'approver', 'auditor')
  @Get(':id')
  get(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<CheckoutView> {
    return this.checkouts.get(actor, id);
  }

  @Roles('approver')
  @RequiresMfa()
  @Post(':id/approve')
  @HttpCode(200)
  approve(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: DecisionDto): Promise<CheckoutView> {
    return this.approvals.approve(actor, id, dto);
  }

  @Roles('approver')
  @RequiresMfa()
  @Post(':id/deny')
  @HttpCode(200)
  deny(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: DecisionDto): Promise<CheckoutView> {
    return this.approvals.deny(actor, id, dto);
  }

  /** After-the-fact review of a break-glass checkout. */
  @Roles('approver')
  @Post(':id/review')
  @HttpCode(200)
  review(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: ReviewDto): Promise<CheckoutView> {
    return this.approvals.review(actor, id, dto);
  }

  @Roles('operator')
  @RequiresMfa()
  @Post(':id/reveal')
  @HttpCode(200)
  reveal(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<{ credential: CredentialView; expiresAt: string }> {
    return this.checkouts.reveal(actor, id);
  }

  @Roles('operator')
  @RequiresMfa()
  @Post(':id/extend')
  @HttpCode(200)
  extend(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: ExtendDto): Promise<CheckoutView> {
    return this.checkouts.extend(actor, id, dto);
  }

  @Roles('operator', 'admin')
  @Post(':id/checkin')
  @HttpCode(200)
  checkin(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<CheckoutView> {
    return this.lifecycle.checkin(actor, id);
  }

  @Roles('admin')
  @Post(':id/revoke')
  @HttpCode(200)
  revoke(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: RevokeDto): Promise<CheckoutView> {
    return this.lifecycle.revoke(actor, id, dto);
  }
}
