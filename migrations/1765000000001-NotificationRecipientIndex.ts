import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Deliveries indexed by the person they were addressed to: the delivery log's `?recipientUserId=` filter, and a user's
 * removal (ON DELETE SET NULL), which otherwise scanned every delivery once per user (11,000 users removed in one
 * statement took minutes).
 */
export class NotificationRecipientIndex1765000000001 implements MigrationInterface {
  name = 'NotificationRecipientIndex1765000000001';

  async up(q: QueryRunner): Promise<void> {
    await q.query('CREATE INDEX notification_deliveries_recipient_idx ON notification_deliveries (recipient_user_id) WHERE recipient_user_id IS NOT NULL');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP INDEX notification_deliveries_recipient_idx');
  }
}
