import { Body, Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentActor, RequiresMfa, Roles } from '../common/auth.decorators';
import { Page } from '../common/pagination';
import { UuidPipe } from '../common/validation';
import { DecisionDto } from '../approvals/approvals.dto';
import { Actor } from '../common/actor';
import { ApiErrors, DECISION_REFUSALS } from '../common/api-errors';
import { ApiAnswer, pageOf } from '../common/api-responses';
import { ApprovalsService } from './approvals.service';
import { CheckoutLifecycleService } from './checkout-lifecycle.service';
import { CheckoutCreatedView, CheckoutListQuery, CheckoutView, CreateCheckoutDto, CredentialView, ExtendDto, RevealView, ReviewDto, RevokeDto } from './checkouts.dto';
import { CheckoutsService } from './checkouts.service';

@ApiTags('Checkouts')
@Controller('v1/checkouts')
export class CheckoutsController {
  constructor(
    private readonly checkouts: CheckoutsService,
    private readonly approvals: ApprovalsService,
    private readonly lifecycle: CheckoutLifecycleService,
  ) {}

  @ApiOperation({ summary: 'Check out an account: active at once (with the credential) or pending approval' })
  @ApiErrors(
    'NOT_FOUND',
    'ACCOUNT_CHECKED_OUT',
    'ACCOUNT_ROTATING',
    'ACCOUNT_NEEDS_ATTENTION',
    'ACCOUNT_NO_PASSWORD',
    'ACCOUNT_ROTATION_PENDING',
    'ACCOUNT_CLEANUP_PENDING',
    'ACCOUNT_BUSY',
    'BREAK_GLASS_NOT_ALLOWED',
    'TTL_EXCEEDS_POLICY',
    'WEBAUTHN_REQUIRED',
  )
  @ApiAnswer(CheckoutCreatedView)
  @Roles('operator')
  // the code is burned in the checkout's own transaction (its first statements): one transaction for the request
  @RequiresMfa({ inTransaction: true })
  @Post()
  create(@CurrentActor() actor: Actor, @Body() dto: CreateCheckoutDto): Promise<CheckoutView & { credential?: CredentialView }> {
    return this.checkouts.request(actor, dto);
  }

  /** Operators see their own; admins, approvers and auditors see all. */
  @ApiOperation({ summary: 'List checkouts (operators: their own; never the credential)' })
  @ApiAnswer(pageOf(CheckoutView))
  @Roles('operator', 'admin', 'approver', 'auditor')
  @Get()
  list(@CurrentActor() actor: Actor, @Query() q: CheckoutListQuery): Promise<Page<CheckoutView>> {
    return this.checkouts.list(actor, q);
  }

  @ApiOperation({ summary: 'Read a checkout (never the credential)' })
  @ApiAnswer(CheckoutView)
  @Roles('operator', 'admin', 'approver', 'auditor')
  @Get(':id')
  get(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<CheckoutView> {
    return this.checkouts.get(actor, id);
  }

  @ApiOperation({ summary: 'Approve a pending checkout (never your own)' })
  @ApiErrors('CHECKOUT_NOT_PENDING', 'WEBAUTHN_REQUIRED', ...DECISION_REFUSALS)
  @ApiAnswer(CheckoutView)
  @Roles('approver')
  @RequiresMfa()
  @Post(':id/approve')
  @HttpCode(200)
  approve(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: DecisionDto): Promise<CheckoutView> {
    return this.approvals.approve(actor, id, dto);
  }

  @ApiOperation({ summary: 'Deny a pending checkout (never your own)' })
  @ApiErrors('CHECKOUT_NOT_PENDING', 'WEBAUTHN_REQUIRED', ...DECISION_REFUSALS)
  @ApiAnswer(CheckoutView)
  @Roles('approver')
  @RequiresMfa()
  @Post(':id/deny')
  @HttpCode(200)
  deny(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: DecisionDto): Promise<CheckoutView> {
    return this.approvals.deny(actor, id, dto);
  }

  /** After-the-fact review of a break-glass checkout: once it has ended, with the reviewer's own step-up code. */
  @ApiOperation({
    summary: 'Review a break-glass checkout after the fact (once it has ended)',
    description: "By an approver or an auditor (a control after the fact: an auditor's work as much as an approver's), never by its requester; once.",
  })
  @ApiErrors('SELF_APPROVAL', 'NOT_BREAK_GLASS', 'CHECKOUT_NOT_ENDED', 'ALREADY_REVIEWED')
  @ApiAnswer(CheckoutView)
  @Roles('approver', 'auditor')
  @RequiresMfa()
  @Post(':id/review')
  @HttpCode(200)
  review(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: ReviewDto): Promise<CheckoutView> {
    return this.approvals.review(actor, id, dto);
  }

  @ApiOperation({ summary: 'Reveal the credential of your active checkout again' })
  @ApiErrors('CHECKOUT_NOT_ACTIVE', 'EXPIRED', 'ACCOUNT_NO_PASSWORD', 'BROKERED_ONLY', 'WEBAUTHN_REQUIRED')
  @ApiAnswer(RevealView)
  @Roles('operator')
  @RequiresMfa()
  @Post(':id/reveal')
  @HttpCode(200)
  reveal(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<{ credential: CredentialView; expiresAt: string }> {
    return this.checkouts.reveal(actor, id);
  }

  @ApiOperation({ summary: "Extend your active checkout (up to the policy's maximum)" })
  @ApiErrors('CHECKOUT_NOT_ACTIVE', 'EXPIRED', 'TTL_EXCEEDS_POLICY', 'WEBAUTHN_REQUIRED')
  @ApiAnswer(CheckoutView)
  @Roles('operator')
  @RequiresMfa()
  @Post(':id/extend')
  @HttpCode(200)
  extend(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: ExtendDto): Promise<CheckoutView> {
    return this.checkouts.extend(actor, id, dto);
  }

  @ApiOperation({ summary: 'Check in (or withdraw) a checkout: the password is rotated' })
  @ApiErrors('CHECKOUT_ENDED')
  @ApiAnswer(CheckoutView)
  @Roles('operator', 'admin')
  @Post(':id/checkin')
  @HttpCode(200)
  checkin(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string): Promise<CheckoutView> {
    return this.lifecycle.checkin(actor, id);
  }

  @ApiOperation({ summary: 'Revoke a checkout by force: sessions ended, password rotated' })
  @ApiErrors('CHECKOUT_ENDED')
  @ApiAnswer(CheckoutView)
  @Roles('admin')
  @Post(':id/revoke')
  @HttpCode(200)
  revoke(@CurrentActor() actor: Actor, @Param('id', UuidPipe) id: string, @Body() dto: RevokeDto): Promise<CheckoutView> {
    return this.lifecycle.revoke(actor, id, dto);
  }
}
