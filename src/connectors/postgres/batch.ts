import { escapeLiteral, type Client, type QueryResult, type QueryResultRow } from 'pg';

/** A statement and its values ($1, $2… in the text). */
export interface Statement {
  text: string;
  values?: ReadonlyArray<string | number | boolean | null | readonly string[]>;
}

/** A value as an SQL literal: strings through the driver's literal quoting, string arrays as `ARRAY[…]::text[]`. */
function literal(v: NonNullable<Statement['values']>[number]): string {
  if (v === null) return 'NULL';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error('not a finite number');
    return String(v);
  }
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'string') return escapeLiteral(v);
  return `(ARRAY[${v.map((s) => escapeLiteral(s)).join(', ')}]::text[])`;
}

/**
 * The statement with its values written in as literals. A statement without values is sent as it is (its text may hold
 * `$` in literals already quoted, such as a SCRAM verifier); one with values must be this connector's own SQL, where `$n`
 * is only ever a placeholder.
 */
function inline(s: Statement): string {
  const values = s.values ?? [];
  if (!values.length) return s.text;
  return s.text.replace(/\$(\d+)/g, (_, n: string) => {
    const i = Number(n) - 1;
    if (i < 0 || i >= values.length) throw new Error(`no value for $${n}`);
    return literal(values[i]);
  });
}

/**
 * Runs the statements in ONE round trip and answers their results in order. Several statements go as one simple query,
 * which PostgreSQL runs as one implicit transaction: all of them take effect or none (a failure rolls back the ones
 * before it), and the values are written in as quoted literals. A single statement goes with bound parameters.
 */
export async function batch(c: Client, statements: Statement[]): Promise<Array<QueryResult<QueryResultRow>>> {
  if (statements.length === 0) return [];
  if (statements.length === 1) return [await c.query(statements[0].text, (statements[0].values ?? []) as unknown[])];
  const out = (await c.query(statements.map(inline).join(';\n'))) as unknown as QueryResult | QueryResult[];
  return Array.isArray(out) ? out : [out];
}
