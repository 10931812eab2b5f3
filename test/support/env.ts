/** Where the tests find the real PostgreSQL of this machine kind (trust auth on 127.0.0.1:5432). */
export const TEST_PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
