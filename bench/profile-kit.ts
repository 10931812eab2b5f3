/**
 * What the profile scripts share (bench/checkout/profile.ts, bench/ephemeral/profile.ts): phases timed by name,
 * prototype methods and pg statements wrapped to feed them, the CPU of a PostgreSQL cluster, the V8 profiler.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { Client as PgClient } from 'pg';

/** Wall-clock phases by name: calls and total milliseconds (phases nest and overlap under concurrency). */
export const phases = new Map<string, { count: number; ms: number }>();

export function add(name: string, ms: number): void {
  const p = phases.get(name) ?? { count: 0, ms: 0 };
  p.count++;
  p.ms += ms;
  phases.set(name, p);
}

/** Times every call of `proto[method]` (async or not) under `name`. */
export function wrap(proto: object, method: string, name: string): void {
  const target = proto as Record<string, (...a: unknown[]) => unknown>;
  const orig = target[method];
  if (typeof orig !== 'function') throw new Error(`no method ${method} to wrap`);
  target[method] = function (this: unknown, ...a: unknown[]) {
    const t0 = performance.now();
    const r = orig.apply(this, a);
    if (r instanceof Promise) return r.finally(() => add(name, performance.now() - t0));
    add(name, performance.now() - t0);
    return r;
  };
}

/**
 * Every pg statement (by `where` the client goes, if given, and its first `width` characters) and every new pg
 * connection, timed into `phases`; `onQuery` sees each statement's text (a trace).
 */
export function wrapPg(o: { where?: (client: PgClient) => string; width?: number; onQuery?: (text: string) => void } = {}): void {
  const proto = PgClient.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const prefix = (c: unknown) => (o.where ? `${o.where(c as PgClient)} ` : '');
  const query = proto.query;
  proto.query = function (this: unknown, ...a: unknown[]) {
    const q = a[0];
    const text = (typeof q === 'string' ? q : ((q as { text?: string })?.text ?? '')).replace(/\s+/g, ' ').trim();
    o.onQuery?.(text);
    const key = `${prefix(this)}sql: ${text.slice(0, o.width ?? 60)}`;
    const t0 = performance.now();
    const r = query.apply(this, a);
    if (r instanceof Promise) return r.finally(() => add(key, performance.now() - t0));
    return r;
  };
  const connect = proto.connect;
  proto.connect = function (this: unknown, ...a: unknown[]) {
    const t0 = performance.now();
    const key = `${prefix(this)}new connection (${(this as { database?: string }).database})`;
    const r = connect.apply(this, a);
    if (r instanceof Promise) return r.finally(() => add(key, performance.now() - t0));
    return r;
  };
}

/** CPU seconds of a PostgreSQL cluster: the postmaster, its reaped children (cutime/cstime) and its live children. */
export function clusterCpu(postmaster: number): number {
  const fields = (pid: string | number) => {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return st.slice(st.lastIndexOf(')') + 2).split(' '); // [0] = state, [1] = ppid, [11..14] = utime stime cutime cstime
    } catch {
      return null;
    }
  };
  const pm = fields(postmaster);
  if (!pm) return NaN;
  let ticks = Number(pm[11]) + Number(pm[12]) + Number(pm[13]) + Number(pm[14]);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const f = fields(d);
    if (f && Number(f[1]) === postmaster) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / 100;
}

/** The V8 profiler of this process (the inspector session connects on first use). */
const inspector = new Session();
let connected = false;
export function inspectorPost(method: string, params?: object): Promise<unknown> {
  if (!connected) {
    inspector.connect();
    connected = true;
  }
  return new Promise<unknown>((resolve, reject) => inspector.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
}
