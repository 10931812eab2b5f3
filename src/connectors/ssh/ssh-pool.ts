import { inspect } from 'node:util';
import type { Client, ClientChannel } from 'ssh2';
import { DEFAULT_POOL_SETTINGS, PoolKey, PoolSettings, PoolStats } from '../admin-pool';
import { ConnectorError } from '../connector.errors';
import type { CallOptions } from '../connector.interface';
import type { Channels } from './ssh-session';

/**
 * Pooled administrator SSH connections (issue 17): a variant of AdminPool (admin-pool.ts) for SSH, where one connection
 * serves several calls AT ONCE, each running its commands on channels of its own (an SSH connection multiplexes
 * sessions; sshd's MaxSessions, 10 by default, bounds how many are open on one connection).
 *
 * Why shared and not lent to one call at a time like a PostgreSQL connection: an SSH channel carries no state into the
 * next one (every command is a fresh `/bin/sh -c` in a fresh session; there is no transaction, role or search path to
 * leave behind), and every call sharing a connection authenticates as the same admin with the same credential to the
 * same verified host (the pool key's fingerprint). So a target normally needs ONE connection: further ones (up to the
 * pool size) are opened only while every open one already serves {@link SshPoolSettings.channels} calls, and beyond
 * that calls share the least busy connection and wait for a free channel. Channels open at once on a connection never
 * exceed that number; when a server allows fewer (MaxSessions lowered), a refused channel lowers the connection's
 * limit to what it has open and the command waits for one of them instead of failing.
 *
 * The rules of AdminPool otherwise (same keys, poolKeyOf): reused only under the same fingerprint — a call with another
 * one (address, admin credential, host-key pin changed) closes the identity's idle connections at once and lets the busy
 * ones finish what they run but take no new call; a target that moved has its old identity's connections closed. A
 * connection takes no new call — and is closed once its calls are done — after ANY error of a call on it (a channel
 * refused, a command failing, authentication, a timeout, an abort: an aborted call's own channels are closed at once),
 * once it is {@link PoolSettings.maxLifetimeMs} old, and when the server ends it (then it is forgotten at once and the
 * next call opens a new one: a restarted sshd, or the admin's own sessions ended on the target). One idle for longer
 * than {@link PoolSettings.checkAfterMs} runs a command (bounded) before it is used again. Idle ones close after
 * {@link PoolSettings.idleMs}; closeAll (shutdown) closes everything.
 */

export interface SshPoolSettings extends PoolSettings {
  /** Calls (and channels open at once) per connection before another connection is opened. Default 8, below sshd's MaxSessions default of 10. */
  channels?: number;
}

const DEFAULT_CHANNELS = 8;
const DEFAULT_CHECK_AFTER_MS = 3000;
const DEFAULT_MAX_LIFETIME_MS = 10 * 60_000;
const CHECK_TIMEOUT_MS = 2000;
const DRAIN_WAIT_MS = 5000;
/** How long a closed connection may take to say goodbye before its socket is destroyed. */
const END_WAIT_MS = 1000;

/** Opens (and verifies the identity of) a new authenticated connection; gives up when the signal fires. */
export type SshOpener = (signal: AbortSignal, timeoutMs: number) => Promise<Client>;

/** What a call gets: the channels it runs commands on, and what it may ask of its connection. */
export interface SshLease {
  channels: Channels;
  /** Per-connection memory that holds for as long as the connection (e.g. the admin's uid). */
  memo: Map<string, unknown>;
  /** No further call on this connection (e.g. the admin's own password was just changed: it was opened with the old one). */
  retire(): void;
}

interface Conn {
  client?: Client;
  /** Resolves true once opened (or checked after idle), false when it turned out unusable; rejects when it could not be opened. */
  ready: Promise<boolean>;
  fingerprint: string;
  createdAt: number;
  lastUsed: number;
  calls: number;
  /** Channels open now, and how many may be. */
  open: number;
  cap: number;
  /** Commands waiting for a channel. */
  queue: Array<() => void>;
  doomed: boolean;
  lost: boolean;
  /** end() was called on it. */
  ended?: boolean;
  idleTimer?: NodeJS.Timeout;
  opening?: AbortController;
  memo: Map<string, unknown>;
}

interface Slot {
  fingerprint: string;
  conns: Conn[];
  /** Calls waiting for a connection (every connection is doomed and the pool is at its size). */
  waiters: Array<() => void>;
}

const gaveUp = (timedOut: boolean) =>
  timedOut ? new ConnectorError('TARGET_TIMEOUT', 'no administrator connection to the target became free before the deadline') : new ConnectorError('TARGET_TIMEOUT', 'the SSH call was aborted');
const closedError = () => new ConnectorError('TARGET_ERROR', 'the SSH connection to the target was closed');

export class SshPool {
  private readonly slots = new Map<string, Slot>();
  private readonly size: number;
  private readonly channels: number;
  private readonly idleMs: number;
  private readonly checkAfterMs: number;
  private readonly maxLifetimeMs: number;
  private closed = false;
  private readonly owners = new Map<string, string>();
  private readonly closing = new Set<Promise<void>>();
  /** Connections opened so far (for tests: counted against the server's own count). */
  opened = 0;

  constructor(settings: SshPoolSettings = DEFAULT_POOL_SETTINGS) {
    this.size = Math.max(1, Math.floor(settings.size));
    this.channels = Math.max(1, Math.floor(settings.channels ?? DEFAULT_CHANNELS));
    this.idleMs = Math.max(0, settings.idleMs);
    this.checkAfterMs = settings.checkAfterMs ?? DEFAULT_CHECK_AFTER_MS;
    this.maxLifetimeMs = settings.maxLifetimeMs ?? DEFAULT_MAX_LIFETIME_MS;
  }

  /**
   * Runs `work` on a connection of the key's pool, shared with other calls; any error retires the connection. The abort
   * signal rejects the call at once, closes its channels and retires the connection (calls sharing it finish first).
   */
  async use<T>(key: PoolKey, opener: SshOpener, opts: CallOptions | undefined, work: (lease: SshLease) => Promise<T>): Promise<T> {
    const { slot, conn } = await this.acquire(key, opener, opts);
    const streams = new Set<ClientChannel>();
    let onAbort: (() => void) | undefined;
    let ok = false;
    try {
      const out = await new Promise<T>((resolve, reject) => {
        onAbort = () => {
          this.retire(slot, conn);
          for (const s of streams) s.close();
          reject(gaveUp(false));
        };
        if (opts?.signal?.aborted) return onAbort();
        opts?.signal?.addEventListener('abort', onAbort, { once: true });
        work({ channels: this.channelsFor(slot, conn, streams, opts), memo: conn.memo, retire: () => this.retire(slot, conn) }).then(resolve, reject);
      });
      ok = true;
      return out;
    } finally {
      if (onAbort) opts?.signal?.removeEventListener('abort', onAbort);
      this.leave(slot, conn, ok);
    }
  }

  /** Closes idle connections now, waits (briefly) for busy ones, then closes them too. Idempotent. */
  async closeAll(): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + DRAIN_WAIT_MS;
    for (const slot of this.slots.values()) {
      for (const c of [...slot.conns]) this.retire(slot, c);
      for (const w of slot.waiters.splice(0)) w();
    }
    while ([...this.slots.values()].some((s) => s.conns.length) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const slot of this.slots.values()) for (const c of [...slot.conns]) this.destroy(slot, c);
    await Promise.all([...this.closing]);
  }

  stats(identity?: string): PoolStats & { channels: number } {
    const slots = identity === undefined ? [...this.slots.values()] : [this.slots.get(identity)].filter((s): s is Slot => !!s);
    const conns = slots.flatMap((s) => s.conns);
    return {
      identities: slots.length,
      idle: conns.filter((c) => c.client && c.calls === 0).length,
      busy: conns.filter((c) => c.client && c.calls > 0).length,
      opening: conns.filter((c) => !c.client).length,
      waiting: slots.reduce((n, s) => n + s.waiters.length, 0) + conns.reduce((n, c) => n + c.queue.length, 0),
      channels: conns.reduce((n, c) => n + c.open, 0),
    };
  }

  /** Counts only: the clients below hold the admin's password or key in their config (ssh2 keeps it). */
  [inspect.custom](): string {
    return `SshPool ${JSON.stringify(this.stats())}`;
  }

  private async acquire(key: PoolKey, opener: SshOpener, opts: CallOptions | undefined): Promise<{ slot: Slot; conn: Conn }> {
    const deadline = opts?.timeoutMs ? Date.now() + opts.timeoutMs : undefined;
    if (key.owner !== undefined) {
      // the target moved (address, port or admin user): what was opened to its old identity is closed now
      const before = this.owners.get(key.owner);
      const old = before !== undefined && before !== key.identity ? this.slots.get(before) : undefined;
      if (old) for (const c of [...old.conns]) this.retire(old, c);
      this.owners.set(key.owner, key.identity);
    }
    for (;;) {
      let slot = this.slots.get(key.identity);
      if (!slot) this.slots.set(key.identity, (slot = { fingerprint: key.fingerprint, conns: [], waiters: [] }));
      if (opts?.signal?.aborted) throw gaveUp(false);
      if (deadline !== undefined && Date.now() >= deadline) throw gaveUp(true);
      // the address, credential or pin changed: nothing opened under the old one takes a call again
      if (slot.fingerprint !== key.fingerprint) {
        slot.fingerprint = key.fingerprint;
        for (const c of [...slot.conns]) this.retire(slot, c);
      }
      const now = Date.now();
      for (const c of [...slot.conns]) if (c.client && now - c.createdAt > this.maxLifetimeMs) this.retire(slot, c);
      this.slots.set(key.identity, slot); // closing the last connection above forgot the slot: this call keeps it
      const usable = slot.conns.filter((c) => !c.doomed && !c.lost);
      let conn = usable.find((c) => c.calls < this.channels);
      if (!conn && slot.conns.length < this.size) conn = this.open(slot, opener, opts);
      // at the size: the least busy connection, whose commands wait for its channels
      conn ??= usable.sort((a, b) => a.calls - b.calls)[0];
      if (!conn) {
        await this.waitForRoom(slot, opts, deadline);
        continue;
      }
      conn.calls++;
      clearTimeout(conn.idleTimer);
      keepsProcess(conn, true);
      if (conn.client && conn.calls === 1 && now - conn.lastUsed > this.checkAfterMs) conn.ready = this.check(conn);
      let usableNow: boolean;
      try {
        usableNow = await raceCall(conn.ready, opts, deadline);
      } catch (e) {
        this.leave(slot, conn, true);
        throw e;
      }
      if (usableNow && !conn.lost && !conn.doomed) return { slot, conn };
      this.leave(slot, conn, false);
    }
  }

  private open(slot: Slot, opener: SshOpener, opts: CallOptions | undefined): Conn {
    const now = Date.now();
    const ac = new AbortController();
    const conn: Conn = { fingerprint: slot.fingerprint, createdAt: now, lastUsed: now, calls: 0, open: 0, cap: this.channels, queue: [], doomed: false, lost: false, opening: ac, memo: new Map(), ready: Promise.resolve(false) };
    slot.conns.push(conn);
    this.opened++;
    conn.ready = opener(ac.signal, opts?.timeoutMs ?? 15_000).then(
      (client) => {
        conn.opening = undefined;
        conn.client = client;
        conn.createdAt = conn.lastUsed = Date.now();
        client.on('close', () => this.lost(slot, conn));
        client.on('error', () => this.lost(slot, conn));
        if (conn.calls === 0 || this.closed) this.destroy(slot, conn); // every caller gave up meanwhile
        return true;
      },
      (e: unknown) => {
        conn.opening = undefined;
        conn.lost = true;
        this.forget(slot, conn);
        throw e;
      },
    );
    conn.ready.catch(() => undefined); // awaited by the calls that are still waiting for it
    return conn;
  }

  /** A command on the connection (bounded): the server still runs sessions for the admin on it. */
  private check(conn: Conn): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), CHECK_TIMEOUT_MS);
      conn.client!.exec('exit 0', (err, stream) => {
        if (err) return clearTimeout(timer), resolve(false);
        stream.on('data', () => undefined);
        stream.stderr.on('data', () => undefined);
        stream.on('close', (code: number | null) => (clearTimeout(timer), resolve(code === 0)));
        stream.end();
      });
    });
  }

  /** The call's view of the connection: each exec waits for a free channel, and the call's open channels are known (closed on abort). */
  private channelsFor(slot: Slot, conn: Conn, streams: Set<ClientChannel>, opts: CallOptions | undefined): Channels {
    const exec: Channels['exec'] = (command, callback) => {
      const fail = (e: Error) => callback(e, undefined as unknown as ClientChannel);
      this.takeChannel(conn, opts).then(() => {
        if (conn.lost || !conn.client) return this.giveChannel(conn), fail(closedError());
        conn.client.exec(command, (err, stream) => {
          if (err) {
            this.giveChannel(conn);
            // the server allows fewer sessions per connection than we had open (MaxSessions): wait for one of ours
            if (conn.open > 0 && !conn.lost) {
              conn.cap = Math.max(1, conn.open);
              return exec(command, callback);
            }
            this.retire(slot, conn);
            return fail(err);
          }
          streams.add(stream);
          stream.once('close', () => {
            streams.delete(stream);
            this.giveChannel(conn);
          });
          callback(undefined, stream);
        });
      }, fail);
    };
    return { exec };
  }

  /** A channel of the connection for one command: at once while fewer than its limit are open, else in turn. */
  private takeChannel(conn: Conn, opts: CallOptions | undefined): Promise<void> {
    if (opts?.signal?.aborted) return Promise.reject(gaveUp(false));
    const take = () => void conn.open++;
    if (conn.open < conn.cap || conn.lost) return Promise.resolve(take());
    return waitInQueue(conn.queue, opts, undefined, take);
  }

  private giveChannel(conn: Conn): void {
    conn.open--;
    while ((conn.open < conn.cap || conn.lost) && conn.queue.length) conn.queue.shift()!();
  }

  /** A call is done with its connection; an error (ok false) retires it. Closed when retired, lost or idle too long. */
  private leave(slot: Slot, conn: Conn, ok: boolean): void {
    conn.calls--;
    conn.lastUsed = Date.now();
    if (!ok) this.retire(slot, conn);
    if (conn.calls > 0) return;
    // still opening and nobody waits for it any more: given up at once (its room is free again)
    if (conn.doomed || conn.lost || this.closed || !conn.client) return this.destroy(slot, conn);
    conn.idleTimer = setTimeout(() => this.destroy(slot, conn), this.idleMs);
    conn.idleTimer.unref();
    keepsProcess(conn, false);
  }

  /** No new call on the connection; closed now when it has none, else when its last call ends. */
  private retire(slot: Slot, conn: Conn): void {
    conn.doomed = true;
    if (conn.calls === 0) this.destroy(slot, conn);
  }

  /** The server or network ended it: forgotten at once; its waiting commands fail. */
  private lost(slot: Slot, conn: Conn): void {
    if (conn.lost) return;
    conn.lost = true;
    for (const go of conn.queue.splice(0)) go();
    if (conn.calls === 0) this.destroy(slot, conn);
    else this.forget(slot, conn);
  }

  private destroy(slot: Slot, conn: Conn): void {
    clearTimeout(conn.idleTimer);
    conn.doomed = true;
    conn.opening?.abort();
    this.forget(slot, conn);
    const client = conn.client;
    if (!client || conn.ended) return;
    conn.ended = true;
    if (conn.lost) return void client.destroy(); // its socket is gone already
    const p = new Promise<void>((resolve) => {
      const timer = setTimeout(() => (client.destroy(), resolve()), END_WAIT_MS);
      client.once('close', () => (clearTimeout(timer), resolve()));
      client.end();
    }).finally(() => this.closing.delete(p));
    this.closing.add(p);
  }

  private forget(slot: Slot, conn: Conn): void {
    const i = slot.conns.indexOf(conn);
    if (i >= 0) slot.conns.splice(i, 1);
    for (const w of slot.waiters.splice(0)) w();
    if (slot.conns.length === 0 && slot.waiters.length === 0) for (const [k, s] of this.slots) if (s === slot) this.slots.delete(k);
  }

  private waitForRoom(slot: Slot, opts: CallOptions | undefined, deadline: number | undefined): Promise<void> {
    return waitInQueue(slot.waiters, opts, deadline);
  }
}

/**
 * Queues the caller on `queue` until its entry is called (then `onWake` runs at once, before anyone else is woken), the
 * call is aborted or its deadline passes.
 */
function waitInQueue(queue: Array<() => void>, opts: CallOptions | undefined, deadline: number | undefined, onWake?: () => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (err?: ConnectorError) => {
      const i = queue.indexOf(wake);
      if (i >= 0) queue.splice(i, 1);
      clearTimeout(timer);
      opts?.signal?.removeEventListener('abort', onAbort);
      if (err) return reject(err);
      onWake?.();
      resolve();
    };
    const wake = () => done();
    const onAbort = () => done(gaveUp(false));
    queue.push(wake);
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    if (deadline !== undefined) timer = setTimeout(() => done(gaveUp(true)), Math.max(0, deadline - Date.now()));
  });
}

/** An idle connection does not keep the process alive (as its idle timer does not); a busy one does. */
function keepsProcess(conn: Conn, yes: boolean): void {
  const sock = (conn.client as unknown as { _sock?: { ref?(): void; unref?(): void } } | undefined)?._sock;
  if (yes) sock?.ref?.();
  else sock?.unref?.();
}

/** `p`, unless the call is aborted or reaches its deadline first. */
function raceCall<T>(p: Promise<T>, opts: CallOptions | undefined, deadline: number | undefined): Promise<T> {
  if (!opts?.signal && deadline === undefined) return p;
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => settle(() => reject(gaveUp(false)));
    const settle = (fn: () => void) => {
      clearTimeout(timer);
      opts?.signal?.removeEventListener('abort', onAbort);
      fn();
    };
    if (opts?.signal?.aborted) return onAbort();
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    if (deadline !== undefined) timer = setTimeout(() => settle(() => reject(gaveUp(true))), Math.max(0, deadline - Date.now()));
    p.then((v) => settle(() => resolve(v)), (e) => settle(() => reject(e)));
  });
}
