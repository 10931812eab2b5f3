import { Type } from 'class-transformer';
import { IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import { Errors } from './errors';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

/** `?limit=&cursor=` of every list endpoint. */
export class PageQuery {
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(MAX_PAGE_SIZE)
  limit?: number;

  @IsOptional()
  @IsString()
  @MaxLength(512)
  @Matches(/^[A-Za-z0-9_-]+$/, { message: 'cursor is not a valid cursor' })
  cursor?: string;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** Cursors are opaque base64url JSON arrays of the last row's sort key. */
export function encodeCursor(key: Array<string | number>): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const INT64_MAX = 9223372036854775807n;

/**
 * What each element of a cursor may be. A cursor comes from the client, so its values are checked as strictly
 * as any input before they reach SQL: `uuid` for uuid columns, `int64` (a decimal string) for bigint columns,
 * and no NUL in any string (PostgreSQL text cannot hold one).
 */
const CURSOR_KINDS = {
  string: (v: unknown) => typeof v === 'string' && !v.includes('\u0000'),
  number: (v: unknown) => typeof v === 'number' && Number.isFinite(v),
  uuid: (v: unknown) => typeof v === 'string' && UUID_PATTERN.test(v),
  int64: (v: unknown) => typeof v === 'string' && /^\d{1,19}$/.test(v) && BigInt(v) <= INT64_MAX,
};
export type CursorKind = keyof typeof CURSOR_KINDS;

export function decodeCursor(cursor: string | undefined, shape: CursorKind[]): Array<string | number> | undefined {
  if (cursor === undefined) return undefined;
  try {
    const key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(key) && key.length === shape.length && key.every((v, i) => CURSOR_KINDS[shape[i]](v))) return key;
  } catch {
    /* fall through */
  }
  throw Errors.validation('cursor is not a valid cursor');
}

/** Takes `limit + 1` rows and turns them into a page, with the cursor built from the last returned row. */
export function toPage<R, T>(rows: R[], limit: number, keyOf: (row: R) => Array<string | number>, map: (row: R) => T): Page<T> {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  return { items: kept.map(map), nextCursor: more ? encodeCursor(keyOf(kept[kept.length - 1])) : null };
}
