import { EntityManager, EntityTarget, FindOptionsWhere, ObjectLiteral, QueryFailedError } from 'typeorm';
import { Errors } from '../common/errors';

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
