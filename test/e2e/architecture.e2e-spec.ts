/**
 * The architecture, checked (issue 13; docs/architecture.md "Layers" and "Who owns what"):
 * - imports point one way: no file imports a module of a higher layer, and the folders form no import cycle;
 * - every SQL statement naming an owned table lives in its owner's folder (fragments the owner exports are how other
 *   owners compose one statement), and TypeORM repositories of an entity are used only by the entity's owner.
 * It reads the source as text: it runs in milliseconds and needs nothing started.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const SRC = resolve(__dirname, '../../src');

/** Low → high. A module may import its own layer's other modules (without a cycle) and every lower layer. */
export const LAYERS: string[][] = [
  ['common', 'config'],
  ['database', 'crypto', 'metrics'],
  ['connectors'],
  ['audit'],
  ['identity'],
  ['notifications'],
  ['targets'],
  ['accounts'],
  ['rotation'],
  ['approvals'],
  ['checkouts', 'ephemeral', 'account-admin'],
  ['gateway', 'live-sessions'],
  ['scheduler', 'health', 'http', 'openapi', '(root)'],
];
/**
 * The command-line client: a program of its own that talks to the REST API. It may import common/ (roles, pagination,
 * the error-code table) and the API's view types from the one place that gathers them (src/views.ts), as types only.
 */
const CLIENT = 'vaultctl';
const CLIENT_MAY_IMPORT = ['common'];
const VIEWS = resolve(SRC, 'views');

/** Table → the folder that owns every statement naming it. */
export const OWNERS: Record<string, string> = {
  accounts: 'accounts',
  rotations: 'rotation',
  checkouts: 'checkouts',
  checkout_approvals: 'checkouts',
  ephemeral_accounts: 'ephemeral',
  ephemeral_policies: 'ephemeral',
  ephemeral_approvals: 'ephemeral',
  targets: 'targets',
  users: 'identity',
  access_tokens: 'identity',
  service_tokens: 'identity',
  oidc_providers: 'identity',
  oidc_logins: 'identity',
  webauthn_credentials: 'identity',
  webauthn_challenges: 'identity',
  audit_events: 'audit',
  audit_head: 'audit',
  keyring_keys: 'crypto',
  notification_channels: 'notifications',
  notification_routes: 'notifications',
  notification_events: 'notifications',
  notification_deliveries: 'notifications',
  gateway_host_keys: 'gateway',
  gateway_tickets: 'gateway',
  gateway_sessions: 'gateway',
  session_recordings: 'gateway',
  session_recording_chunks: 'gateway',
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return files(path);
    return /\.ts$/.test(name) && !/\.(spec|d)\.ts$/.test(name) ? [path] : [];
  });
}

function moduleOf(file: string): string {
  const rel = relative(SRC, file).split('/');
  return rel.length === 1 ? '(root)' : rel[0];
}

const layerOf = (mod: string) => LAYERS.findIndex((l) => l.includes(mod));

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import|require\()\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) out.push(resolve(dirname(file), m[1]));
  return out.filter((p) => p.startsWith(SRC));
}

describe('architecture', () => {
  const all = files(SRC);

  it('every module has a layer', () => {
    const unknown = [...new Set(all.map(moduleOf))].filter((m) => m !== CLIENT && layerOf(m) < 0);
    expect(unknown).toEqual([]);
  });

  it('imports point from higher layers to lower ones only, and the client imports only shared types', () => {
    const wrong: string[] = [];
    for (const file of all) {
      const from = moduleOf(file);
      for (const target of imports(file)) {
        const to = moduleOf(target + '.ts');
        if (to === from) continue;
        if (from === CLIENT) {
          if (target === VIEWS) continue; // checked below: types only
          if (!CLIENT_MAY_IMPORT.includes(to)) wrong.push(`${relative(SRC, file)} → ${relative(SRC, target)} (the client imports shared types only)`);
        } else if (to === CLIENT || layerOf(to) > layerOf(from)) {
          wrong.push(`${relative(SRC, file)} (${from}, layer ${layerOf(from)}) → ${relative(SRC, target)} (${to}, layer ${layerOf(to)})`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('the client takes the view types from src/views.ts as types only (no server code is loaded by vaultctl)', () => {
    const wrong: string[] = [];
    for (const file of all.filter((f) => moduleOf(f) === CLIENT)) {
      for (const m of readFileSync(file, 'utf8').matchAll(/^import\s+(type\s+)?[^;]*?from\s+'([^']+)'/gm)) {
        if (m[2].startsWith('.') && resolve(dirname(file), m[2]) === VIEWS && !m[1]) wrong.push(relative(SRC, file));
      }
    }
    expect(wrong).toEqual([]);
  });

  it('modules form no import cycle', () => {
    const edges = new Map<string, Set<string>>();
    for (const file of all) {
      const from = moduleOf(file);
      for (const target of imports(file)) {
        const to = moduleOf(target + '.ts');
        if (to !== from) edges.set(from, (edges.get(from) ?? new Set()).add(to));
      }
    }
    // strongly connected components (Tarjan): a component of more than one module is a cycle
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const cycles: string[][] = [];
    const connect = (v: string) => {
      index.set(v, index.size);
      low.set(v, index.get(v)!);
      stack.push(v);
      for (const w of edges.get(v) ?? []) {
        if (!index.has(w)) {
          connect(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
      if (low.get(v) === index.get(v)) {
        const component: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          component.push(w);
        } while (w !== v);
        if (component.length > 1) cycles.push(component.sort());
      }
    };
    for (const v of edges.keys()) if (!index.has(v)) connect(v);
    expect(cycles).toEqual([]);
  });

  it("every statement naming an owned table is in its owner's folder", () => {
    const tables = Object.keys(OWNERS).join('|');
    const statement = new RegExp(`\\b(?:FROM|JOIN|UPDATE|INTO|DELETE\\s+FROM|TABLE|EXISTS\\s*\\(\\s*SELECT\\s+1\\s+FROM)\\s+"?(${tables})\\b"?`, 'g');
    const wrong: string[] = [];
    for (const file of all) {
      const mod = moduleOf(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(statement)) {
        if (OWNERS[m[1]] !== mod) wrong.push(`${relative(SRC, file)}: "${m[0]}" (${m[1]} belongs to ${OWNERS[m[1]]}/)`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("an entity's repository is used only by its owner", () => {
    const entityOwner = new Map<string, string>();
    for (const file of all) {
      for (const m of readFileSync(file, 'utf8').matchAll(/@Entity\(\{\s*name:\s*'(\w+)'[\s\S]*?export class (\w+)/g)) {
        if (OWNERS[m[1]]) entityOwner.set(m[2], OWNERS[m[1]]);
      }
    }
    const wrong: string[] = [];
    for (const file of all) {
      const mod = moduleOf(file);
      for (const m of readFileSync(file, 'utf8').matchAll(/(?:getRepository|findByIdOrThrow|keysetPage)\(\s*(?:[\w.]+,\s*)?(\w+Entity)\b/g)) {
        const owner = entityOwner.get(m[1]);
        if (owner && owner !== mod) wrong.push(`${relative(SRC, file)}: ${m[0]} (${m[1]} belongs to ${owner}/)`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
