import { EntityManager, EntityTarget, FindOptionsWhere, ObjectLiteral, QueryFailedError, SelectQueryBuilder } from 'typeorm';
import { Errors } from '../common/errors';
import { CursorKind, decodeCursor, DEFAULT_PAGE_SIZE, Page, PageQuery, toPage } from '../common/pagination';

/** PostgreSQL's unique_violation, as TypeORM surfaces it. */
export function isUniqueViolation(e: unknown): boolean {
  return e instanceof QueryFailedError && (e as QueryFailedError & { code?: string }).code === '23505';
}

/** Loads one row by id (optionally `FOR UPDATE`), or throws 404 NOT_FOUND naming `what`. */
export async function findByIdOrThrow<T extends ObjectLiteral & { id: string }>(
  em: EntityManager,
  entity: EntityTarget<T>,
  id: string,
  what: string,
  lock = false,
): Promise<T> {
  const row = await em.getRepository(entity).findOne({
    where: { id } as FindOptionsWhere<T>,
    lock: lock ? { mode: 'pessimistic_write' } : undefined,
  });
  if (!row) throw Errors.notFound(what);
  return row;
}

/**
 * One keyset page of an entity, ascending on a unique column (`?limit=&cursor=`). `filter` adds WHERE
 * clauses to the query builder (alias `r`).
 */
export async function keysetPage<T extends ObjectLiteral, V>(
  em: EntityManager,
  entity: EntityTarget<T>,
  key: { column: keyof T & string; kind: CursorKind },
  q: PageQuery,
  map: (row: T) => V,
  filter?: (qb: SelectQueryBuilder<T>) => void,
): Promise<Page<V>> {
  const limit = q.limit ?? DEFAULT_PAGE_SIZE;
  const qb = em.getRepository(entity).createQueryBuilder('r').orderBy(`r.${key.column}`, 'ASC').limit(limit + 1);
  const cursor = decodeCursor(q.cursor, [key.kind]);
  if (cursor) qb.andWhere(`r.${key.column} > :after`, { after: cursor[0] });
  filter?.(qb);
  return toPage(await qb.getMany(), limit, (row) => [row[key.column] as string], map);
}
