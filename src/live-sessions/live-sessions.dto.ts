import { z } from 'zod';
import { apiView, timestamp, uuid } from '../common/api-responses';

/** One live session of an account on its target, as the connector read it just now (never a secret, no query text). */
export const TargetSessionView = apiView(
  'TargetSessionView',
  z.object({
    id: z.string().describe('Opaque, stable while the session lives: `ssh-<pid>-<16 hex>`, `pg-<pid>-<backend start, epoch µs>`, `my-<connection id>`. What terminate takes.'),
    username: z.string().describe('The account on the target.'),
    kind: z.enum(['ssh', 'postgres', 'mysql']),
    clientAddress: z.string().nullable().describe('`address:port` of the client when the target tells (SSH: only to a root admin; PostgreSQL: null over a unix socket).'),
    since: timestamp().nullable().describe('When the session started (MySQL/MariaDB do not tell: null).'),
    state: z.string().nullable().describe('SSH `active` or `authenticating`; PostgreSQL `state` (active, idle, …); MySQL `COMMAND` (Sleep, Query, …).'),
    database: z.string().nullable().optional().describe('PostgreSQL, MySQL: the database the session uses.'),
    tty: z.string().nullable().optional().describe('SSH: the terminal (`pts/3`), null without one.'),
    command: z.string().nullable().optional().describe('SSH: the title of the first process of the login (≤ 200 characters).'),
    processes: z
      .array(z.object({ pid: z.number().int(), command: z.string() }))
      .optional()
      .describe('SSH: the processes ending this session ends (at most 50; titles bounded).'),
  }),
);
export type TargetSessionView = z.output<typeof TargetSessionView>;

export const LiveSessionsView = apiView(
  'LiveSessionsView',
  z.object({
    items: z.array(TargetSessionView),
    targetId: uuid(),
    account: z.string().nullable().describe('The account whose sessions these are; null for the target-wide view (every account the vault manages there).'),
  }),
  "The live sessions on the target right now (an ended or never-active checkout or one-time account has none); never the target admin's own.",
);
export type LiveSessionsView = z.output<typeof LiveSessionsView>;

export const SessionTerminatedView = apiView('SessionTerminatedView', z.object({ ended: z.literal(true) }), 'The session was ended on the target.');
export type SessionTerminatedView = z.output<typeof SessionTerminatedView>;
