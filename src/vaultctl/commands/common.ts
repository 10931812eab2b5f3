import { Command, InvalidArgumentError } from 'commander';
import type { VaultClient } from '../client';
import type { Context } from '../context';
import { ApiError } from '../errors';
import type { UserView } from '../../views';

import type { Page } from '../../common/pagination';

export type { Page };

/** Approvals that count: `approve` decisions that still match the request (as the vault counts them). */
export function approvalsThatCount(v: { approvals: Array<{ decision: string; matchesRequest: boolean }> }): number {
  return v.approvals.filter((a) => a.decision === 'approve' && a.matchesRequest).length;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (v: string) => UUID.test(v);

/** Commander parser for a whole number option in a range. */
export const intIn = (min: number, max: number) => (value: string) => {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('must be a whole number');
  const n = Number(value);
  if (n < min || n > max) throw new InvalidArgumentError(`must be between ${min} and ${max}`);
  return n;
};

/** `a,b,c` → ['a', 'b', 'c'] (empty parts dropped). */
export const commaList = (value: string) =>
  value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Repeatable option: each occurrence appended. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Every item of a keyset-paginated list. */
export async function allPages<T>(client: VaultClient, path: string, query: Record<string, string | undefined> = {}): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await client.get<Page<T>>(path, { ...query, limit: 200, cursor });
    items.push(...page.items);
    if (!page.nextCursor) return items;
    cursor = page.nextCursor;
  }
}

/** `--limit` / `--cursor` of list commands. */
export interface ListOptions {
  limit?: number;
  cursor?: string;
}
export const pageQuery = (o: ListOptions) => ({ limit: o.limit, cursor: o.cursor });

/** `--limit` / `--cursor` on a list command. */
export const listOptions = (c: Command) => c.option('--limit <n>', 'page size', intIn(1, 200)).option('--cursor <cursor>', 'next page');

/** A user id, or a username looked up in the user list (admins). */
export async function resolveUser(ctx: Context, ref: string): Promise<string> {
  if (isUuid(ref)) return ref;
  const user = (await allPages<UserView>(ctx.client(), '/v1/users')).find((u) => u.username === ref.toLowerCase());
  if (!user) throw new ApiError(404, 'NOT_FOUND', { message: `no user named ${ref}` });
  return user.id;
}
