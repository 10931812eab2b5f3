/**
 * What may be spliced into SQL text as a name (never a value: values are always parameters). The SQL fragments one
 * owner exports for another's statement, and the claimed-work statements, take names from code, never from input;
 * these checks make a mistake fail loudly instead of becoming SQL.
 */
const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;
const COLUMN = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;
const TABLE = /^[a-z_][a-z0-9_]*( [a-z_][a-z0-9_]*)?$/;
const PARAMETER = /^\$\d+(::uuid)?$/;

function checked(name: string, pattern: RegExp, what: string): string {
  if (!pattern.test(name)) throw new Error(`not ${what}: ${name}`);
  return name;
}

/** A plain identifier: a table or column name. */
export const sqlIdentifier = (name: string): string => checked(name, IDENTIFIER, 'an identifier');
/** A column, optionally qualified by its table's alias (`a.id`); with `orParameter`, also a positional parameter (`$1::uuid`). */
export const sqlColumn = (name: string, o: { orParameter?: boolean } = {}): string =>
  o.orParameter && PARAMETER.test(name) ? name : checked(name, COLUMN, 'a column name');
/** A table, optionally with an alias (`checkouts c`). */
export const sqlTable = (name: string): string => checked(name, TABLE, 'a table name');
