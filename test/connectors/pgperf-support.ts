import { Client as PgClient } from 'pg';

/** The statements sent on any pg client while `work` runs (the driver's query, seen from outside the connector). */
export async function statementsDuring(work: () => Promise<unknown>): Promise<string[]> {
  const proto = PgClient.prototype as unknown as { query: (...a: unknown[]) => unknown };
  const orig = proto.query;
  const sql: string[] = [];
  proto.query = function (this: unknown, ...a: unknown[]) {
    const q = a[0];
    sql.push(typeof q === 'string' ? q : String((q as { text?: string })?.text ?? ''));
    return orig.apply(this, a);
  };
  try {
    await work();
  } finally {
    proto.query = orig;
  }
  return sql;
}
