import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { documentText } from '../support/openapi-check';
import { startTestVault, TestVault } from '../support/vault';

/**
 * The portal's typed client is generated from the vault's OpenAPI document (scripts/portal-api.ts): the committed
 * portal/src/api/openapi.json must be the document the running vault serves, and schema.d.ts what openapi-typescript
 * makes of it. A changed API fails here until `npm run portal:api` is run; then the portal's type-check fails wherever
 * the portal no longer fits the API.
 */

const ROOT = join(__dirname, '../..');
const API_DIR = join(ROOT, 'portal/src/api');
const REGENERATE = "the portal's API files are stale: run `npm run portal:api` and commit portal/src/api/openapi.json and schema.d.ts";

/** The first lines where two texts differ: what changed, without printing 700 kB. */
function firstDifferences(committed: string, expected: string, max = 8): string[] {
  const a = committed.split('\n');
  const b = expected.split('\n');
  const out: string[] = [];
  for (let i = 0; i < Math.max(a.length, b.length) && out.length < max; i++) {
    if (a[i] !== b[i]) out.push(`line ${i + 1}: committed ${JSON.stringify(a[i] ?? '(end)')}, expected ${JSON.stringify(b[i] ?? '(end)')}`);
  }
  return out;
}

function expectSame(name: string, expected: string): void {
  const committed = readFileSync(join(API_DIR, name), 'utf8');
  if (committed !== expected) throw new Error(`${REGENERATE}\n${name}:\n${firstDifferences(committed, expected).join('\n')}`);
}

describe("the portal's generated API files (e2e, real PostgreSQL)", () => {
  let vault: TestVault;
  let running: string;

  beforeAll(async () => {
    vault = await startTestVault();
    running = documentText((await vault.http().get('/docs-json').expect(200)).body);
  });
  afterAll(() => vault?.close());

  it('portal/src/api/openapi.json is the document the vault serves', () => {
    expectSame('openapi.json', running);
  });

  it('portal/src/api/schema.d.ts is what openapi-typescript makes of it', () => {
    // the script's own generator, in a process of its own (jest cannot load openapi-typescript's ES-module dependencies)
    const run = spawnSync(join(ROOT, 'node_modules/.bin/ts-node'), ['--transpile-only', 'scripts/portal-api.ts', '--types'], { cwd: ROOT, input: running, encoding: 'utf8', timeout: 60_000 });
    if (run.status !== 0) throw new Error(`scripts/portal-api.ts --types failed (${run.status ?? run.signal}): ${run.stderr}`);
    expectSame('schema.d.ts', run.stdout);
  });
});
