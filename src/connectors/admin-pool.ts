import { createHmac, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { ConnectorError } from './connector.errors';
import type { CallOptions, ConnectorTarget } from './connector.interface';

/**
 * Pooled administrator connections to targets (PostgreSQL and MySQL/MariaDB; SSH has a shared-channel variant, ssh/ssh-pool.ts).
 *
 * One bounded pool per target identity (type, host, port, database, admin user). A connection is reused only while the
 * call's fingerprint ({@link poolKeyOf}) — an HMAC-SHA-256, under a key random per process, over everything that decides whom the vault talks to and as whom
 * (address, database, admin user, admin password and keys, TLS options with CA and certificate pin) — is the pool's:
 * a call with another fingerprint (the address, admin credential or pin was changed) closes the identity's idle
 * connections at once and has its busy ones destroyed when they are released, so nothing opened under the old
 * credential or identity is used again. A new connection establishes the server's identity (TLS, SCRAM, pin) again; a
 * pooled one was verified when it was opened.
 *
 * A connection is destroyed, never reused, when its work threw any error (authentication, protocol, timeout, abort),
 * when the driver says it was left unsafe (an open transaction), when the server closed it while idle, when it was
 * idle longer than the idle time, or when it is older than {@link PoolSettings.maxLifetimeMs} (a bound on how long a
 * credential revoked on the server side, which the vault cannot see, keeps an open connection working). A connection
 * idle for more than {@link PoolSettings.checkAfterMs} is checked by the driver (a round trip) before it is reused.
 * Callers beyond the pool's size wait in a queue, honouring their abort signal and deadline.
 */

/** Pool limits; the connectors get them from ConnectorRegistry (VAULT_TARGET_POOL_SIZE, VAULT_TARGET_POOL_IDLE_MS). */
export interface PoolSettings {
  /** Connections per target identity, idle and busy together (1–64). */
  size: number;
  /** An idle connection is closed after this many milliseconds. */
  idleMs: number;
  /** A connection idle for longer than this is checked (driver.check) before reuse. Default 3000. */
  checkAfterMs?: number;
  /** A connection older than this is closed instead of reused. Default 10 minutes. */
  maxLifetimeMs?: number;
}

export const DEFAULT_POOL_SETTINGS: PoolSettings = { size: 4, idleMs: 30_000 };
const DEFAULT_CHECK_AFTER_MS = 3000;
const DEFAULT_MAX_LIFETIME_MS = 10 * 60_000;
/** How long the reuse check of an idle connection may take before the connection is given up for a new one. */
const CHECK_TIMEOUT_MS = 2000;
/** How long closeAll waits for busy connections to finish their work before destroying them. */
const DRAIN_WAIT_MS = 5000;

/** How a connector opens, checks and closes its connections. */
export interface PoolDriver<C> {
  /** Opens (and verifies the identity of) a new connection; must give up when the signal fires. */
  open(signal: AbortSignal | undefined): Promise<C>;
  /** Closes the connection at once (no graceful goodbye needed); may resolve when it is closed. Never rejects. */
  destroy(conn: C): void | Promise<void>;
  /** A round trip proving the connection still works (`SELECT 1`); throws when it does not. */
  check(conn: C, signal: AbortSignal | undefined): Promise<void>;
  /** Calls `lost` once when the server or the network ends the connection ('end' / 'error'). */
  watch(conn: C, lost: () => void): void;
  /** After the work succeeded: whether the connection is clean enough to be reused (no open transaction, no SET ROLE). */
  reusable?(conn: C): boolean;
}

/** A connector holding pooled connections, closed by ConnectorRegistry at shutdown. */
export interface PooledConnector {
  closeAll(): Promise<void>;
}

/** The key of every fingerprint: random per process, never stored or shown. */
const FINGERPRINT_KEY = randomBytes(32);

/** Which pool (the identity) and which credential and identity proof the call uses (the fingerprint). */
export interface PoolKey {
  identity: string;
  fingerprint: string;
  /**
   * The target (its row id) the pool belongs to, when the caller says: pools are then never shared between two targets,
   * and a target whose address or admin user changed has the pool of its old identity closed at once.
   */
  owner?: string;
  /**
   * The owner's pools that belong together (PostgreSQL: one per database of the target, all sharing the identity of its
   * home database as their place): an owner seen with another place has every pool of its old place closed at once.
   * Without it the identity is the place (one pool per owner, as for MySQL).
   */
  place?: string;
  /** This identity's idle time (ms), when it must be shorter than the pool's (capped at the pool's). */
  idleMs?: number;
}

/** The pool key of a target's admin connection. `database` is the one connected to (it may differ from options.database). */
export function poolKeyOf(target: ConnectorTarget & { id?: string }, database: string | undefined): PoolKey {
  const owner = typeof target.id === 'string' ? target.id : undefined;
  const identity = JSON.stringify([owner ?? null, target.type, target.host, target.port, database ?? null, target.adminUsername]);
  const o = target.options ?? {};
  // keyed with a secret of this process: a plain hash over the admin password would let whoever reads a fingerprint (a
  // heap dump, a debug print) test password guesses offline at hash speed
  const fingerprint = createHmac('sha256', FINGERPRINT_KEY)
    .update(JSON.stringify([
      identity, target.adminPassword ?? null, target.adminPrivateKey ?? null, target.adminPassphrase ?? null,
      o.tls ?? null, o.tlsCa ?? null, o.tlsCertSha256?.trim().toUpperCase() ?? null, o.hostKeySha256 ?? null,
    ]))
    .digest('hex');
  return { identity, fingerprint, ...(owner ? { owner } : {}) };
}

interface Entry<C> {
  conn: C;
  fingerprint: string;
  createdAt: number;
  lastUsed: number;
  /** Destroy on release: its fingerprint was replaced, or the pool is draining. */
  doomed: boolean;
  /** The server or network ended it. */
  lost: boolean;
  idleTimer?: NodeJS.Timeout;
}

interface Slot<C> {
  fingerprint: string;
  /** The key's place (PoolKey.place, else its identity). */
  place: string;
  /** Idle time of this slot's connections (PoolKey.idleMs, at most the pool's). */
  idleMs: number;
  idle: Entry<C>[];
  busy: Set<Entry<C>>;
  opening: number;
  waiters: Array<() => void>;
  driver: PoolDriver<C>;
}

/** What a pool holds right now, for tests and metrics. */
export interface PoolStats {
  identities: number;
  idle: number;
  busy: number;
  opening: number;
  waiting: number;
}

/** Thrown to a waiter whose call was aborted or ran past its deadline while the pool was full. */
function gaveUp(timedOut: boolean): ConnectorError {
  return timedOut
    ? new ConnectorError('TARGET_TIMEOUT', 'no administrator connection to the target became free before the deadline')
    : new ConnectorError('TARGET_ERROR', 'the call was aborted');
}

export class AdminPool<C> {
  private readonly slots = new Map<string, Slot<C>>();
  private readonly size: number;
  private readonly idleMs: number;
  private readonly checkAfterMs: number;
  private readonly maxLifetimeMs: number;
  /** After closeAll: connections are still lent, but closed on release (none outlives shutdown). */
  private closed = false;
  /** The place (PoolKey.place, else the identity) each owner (target id) was last used with. */
  private readonly owners = new Map<string, string>();
  /** Closes under way, awaited by closeAll. */
  private readonly closing = new Set<Promise<void>>();

  constructor(settings: PoolSettings = DEFAULT_POOL_SETTINGS) {
    this.size = Math.max(1, Math.floor(settings.size));
    this.idleMs = Math.max(0, settings.idleMs);
    this.checkAfterMs = settings.checkAfterMs ?? DEFAULT_CHECK_AFTER_MS;
    this.maxLifetimeMs = settings.maxLifetimeMs ?? DEFAULT_MAX_LIFETIME_MS;
  }

  /**
   * Runs `work` on a connection of the key's pool: reused when one is idle and fits the fingerprint, else opened (when
   * the pool has room) or waited for. The connection goes back to the pool only when the work succeeded and the driver
   * finds it reusable; the abort signal destroys the connection in use.
   */
  async use<T>(key: PoolKey, driver: PoolDriver<C>, opts: CallOptions | undefined, work: (conn: C) => Promise<T>): Promise<T> {
    const { slot, entry } = await this.acquire(key, driver, opts);
    let released = false;
    let ok = false;
    const releaseOnce = () => {
      if (released) return;
      released = true;
      this.release(slot, entry, ok);
    };
    // an abort destroys the connection and frees the slot at once, whether or not the work notices: a driver whose
    // destroy does not fail the statement in flight (mysql2's half-close) must not hold the slot until the server answers
    let onAbort = () => undefined as void;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => {
        entry.lost = true;
        releaseOnce();
        reject(gaveUp(false));
      };
    });
    aborted.catch(() => undefined);
    opts?.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (opts?.signal?.aborted) {
        onAbort();
        return await aborted;
      }
      const running = work(entry.conn);
      running.catch(() => undefined);
      const out = await Promise.race([running, aborted]);
      ok = !entry.lost && (driver.reusable ? driver.reusable(entry.conn) : true);
      return out;
    } finally {
      opts?.signal?.removeEventListener('abort', onAbort);
      releaseOnce();
    }
  }

  /** Closes every idle connection now, waits (briefly) for busy ones and then destroys them too. Idempotent. */
  async closeAll(): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + DRAIN_WAIT_MS;
    for (const slot of this.slots.values()) {
      this.evict(slot);
      for (const w of slot.waiters.splice(0)) w();
    }
    while ([...this.slots.values()].some((s) => s.busy.size || s.opening) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const slot of this.slots.values()) {
      for (const e of slot.busy) {
        e.lost = true;
        this.close(slot.driver, e.conn);
      }
    }
    await Promise.all([...this.closing]);
  }

  private close(driver: PoolDriver<C>, conn: C): void {
    const p = Promise.resolve()
      .then(() => driver.destroy(conn))
      .catch(() => undefined)
      .finally(() => this.closing.delete(p));
    this.closing.add(p);
  }

  /** What util.inspect (a log line, a debug print) shows of a pool: its counts, never a connection or a fingerprint. */
  [inspect.custom](): string {
    return `AdminPool ${JSON.stringify(this.stats())}`;
  }

  stats(identity?: string): PoolStats {
    const slots = identity === undefined ? [...this.slots.values()] : [this.slots.get(identity)].filter((s): s is Slot<C> => !!s);
    return {
      identities: slots.length,
      idle: slots.reduce((n, s) => n + s.idle.length, 0),
      busy: slots.reduce((n, s) => n + s.busy.size, 0),
      opening: slots.reduce((n, s) => n + s.opening, 0),
      waiting: slots.reduce((n, s) => n + s.waiters.length, 0),
    };
  }

  private async acquire(key: PoolKey, driver: PoolDriver<C>, opts: CallOptions | undefined): Promise<{ slot: Slot<C>; entry: Entry<C> }> {
    const deadline = opts?.timeoutMs ? Date.now() + opts.timeoutMs : undefined;
    const place = key.place ?? key.identity;
    // the target moved (address, port, database or admin user): what was opened to its old place is closed now
    if (key.owner !== undefined) {
      const before = this.owners.get(key.owner);
      if (before !== undefined && before !== place) {
        for (const old of [...this.slots.values()].filter((s) => s.place === before)) {
          this.evict(old);
          this.forgetIfEmpty(old);
        }
      }
      this.owners.set(key.owner, place);
    }
    // woken: this call was first in the queue and was told there is room; it goes before anyone who arrived since
    let woken = false;
    for (;;) {
      // looked up on every turn: an emptied pool is forgotten while a woken waiter has not run yet
      let slot = this.slots.get(key.identity);
      if (!slot) {
        slot = { fingerprint: key.fingerprint, place, idleMs: Math.min(this.idleMs, key.idleMs ?? this.idleMs), idle: [], busy: new Set(), opening: 0, waiters: [], driver };
        this.slots.set(key.identity, slot);
      }
      const gaveUpNow = opts?.signal?.aborted ? gaveUp(false) : deadline !== undefined && Date.now() >= deadline ? gaveUp(true) : undefined;
      if (gaveUpNow) {
        if (woken) this.wake(slot); // the room it was told of goes to the next in line
        throw gaveUpNow;
      }
      // the address, credential or pin changed: nothing opened under the old one is used again
      if (slot.fingerprint !== key.fingerprint) {
        this.evict(slot);
        slot.fingerprint = key.fingerprint;
        slot.driver = driver;
      }
      // the same identity now belongs with another place (its owner's home database changed): closed with that place
      slot.place = place;
      // first come, first served: a call arriving while others wait queues behind them
      if (!woken && slot.waiters.length) {
        await this.waitForRoom(slot, opts, deadline, false);
        woken = true;
        continue;
      }
      const reused = await this.takeIdle(slot, opts);
      if (reused) {
        this.passOn(slot);
        return { slot, entry: reused };
      }
      if (slot.idle.length + slot.busy.size + slot.opening < this.size) {
        const opening = this.open(slot, key, driver, opts); // counted in slot.opening at once
        this.passOn(slot);
        return { slot, entry: await opening };
      }
      await this.waitForRoom(slot, opts, deadline, woken);
      woken = true;
    }
  }

  /** Wakes the next waiter when there is still room or an idle connection (several may have freed at once). */
  private passOn(slot: Slot<C>): void {
    if (slot.waiters.length && (slot.idle.length || slot.idle.length + slot.busy.size + slot.opening < this.size)) this.wake(slot);
  }

  /** The most recently used idle connection that still works, moved to busy; undefined when there is none. */
  private async takeIdle(slot: Slot<C>, opts: CallOptions | undefined): Promise<Entry<C> | undefined> {
    while (slot.idle.length) {
      const e = slot.idle.pop()!;
      clearTimeout(e.idleTimer);
      slot.busy.add(e);
      const now = Date.now();
      if (e.lost || now - e.createdAt > this.maxLifetimeMs) {
        this.drop(slot, e);
        continue;
      }
      if (now - e.lastUsed > this.checkAfterMs) {
        let timer: NodeJS.Timeout | undefined;
        try {
          // a connection the network dropped silently would hang the check until the call's deadline: bounded, then a new one
          await Promise.race([
            slot.driver.check(e.conn, opts?.signal),
            new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the reuse check got no answer')), CHECK_TIMEOUT_MS))),
          ]);
        } catch {
          this.drop(slot, e);
          continue;
        } finally {
          clearTimeout(timer);
        }
        if (e.lost || e.doomed) {
          this.drop(slot, e);
          continue;
        }
      }
      return e;
    }
    return undefined;
  }

  private async open(slot: Slot<C>, key: PoolKey, driver: PoolDriver<C>, opts: CallOptions | undefined): Promise<Entry<C>> {
    slot.opening++;
    let conn: C;
    try {
      conn = await this.openOrGiveUp(driver, opts?.signal);
    } catch (e) {
      slot.opening--;
      this.wake(slot);
      this.forgetIfEmpty(slot);
      throw e;
    }
    slot.opening--;
    const now = Date.now();
    const entry: Entry<C> = { conn, fingerprint: key.fingerprint, createdAt: now, lastUsed: now, doomed: slot.fingerprint !== key.fingerprint, lost: false };
    driver.watch(conn, () => {
      if (entry.lost) return;
      entry.lost = true;
      const i = slot.idle.indexOf(entry);
      if (i >= 0) {
        slot.idle.splice(i, 1);
        clearTimeout(entry.idleTimer);
        this.close(driver, conn);
        this.forgetIfEmpty(slot);
        this.wake(slot);
      }
    });
    slot.busy.add(entry);
    return entry;
  }

  /**
   * driver.open, but given up when the signal fires even if the driver's promise never settles (pg's and mysql2's
   * connect promises stay pending when the connection is ended while they wait for a silent server): the slot is freed
   * at once, and a connection the driver still hands over later is destroyed.
   */
  private openOrGiveUp(driver: PoolDriver<C>, signal: AbortSignal | undefined): Promise<C> {
    const opening = driver.open(signal);
    if (!signal) return opening;
    return new Promise<C>((resolve, reject) => {
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        reject(gaveUp(false));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      if (signal.aborted) onAbort();
      opening.then(
        (conn) => {
          signal.removeEventListener('abort', onAbort);
          if (settled) this.close(driver, conn);
          else {
            settled = true;
            resolve(conn);
          }
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          if (!settled) {
            settled = true;
            reject(e);
          }
        },
      );
    });
  }

  private release(slot: Slot<C>, e: Entry<C>, ok: boolean): void {
    slot.busy.delete(e);
    if (!ok || e.lost || e.doomed || this.closed || e.fingerprint !== slot.fingerprint) {
      this.close(slot.driver, e.conn);
      e.lost = true;
    } else {
      e.lastUsed = Date.now();
      e.idleTimer = setTimeout(() => {
        const i = slot.idle.indexOf(e);
        if (i < 0) return;
        slot.idle.splice(i, 1);
        this.close(slot.driver, e.conn);
        e.lost = true;
        this.forgetIfEmpty(slot);
      }, slot.idleMs);
      e.idleTimer.unref();
      slot.idle.push(e);
    }
    this.wake(slot);
    this.forgetIfEmpty(slot);
  }

  /** Destroys a connection taken from idle (it is in busy) without lending it. */
  private drop(slot: Slot<C>, e: Entry<C>): void {
    slot.busy.delete(e);
    e.lost = true;
    this.close(slot.driver, e.conn);
  }

  /** Closes the idle connections now; busy ones are destroyed on release. */
  private evict(slot: Slot<C>): void {
    for (const e of slot.idle.splice(0)) {
      clearTimeout(e.idleTimer);
      e.lost = true;
      this.close(slot.driver, e.conn);
    }
    for (const e of slot.busy) e.doomed = true;
  }

  /** Queues the call (at the front when it had been woken already and lost the room) until woken, aborted or past its deadline. */
  private waitForRoom(slot: Slot<C>, opts: CallOptions | undefined, deadline: number | undefined, front: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (err?: ConnectorError) => {
        const i = slot.waiters.indexOf(wake);
        if (i >= 0) slot.waiters.splice(i, 1);
        clearTimeout(timer);
        opts?.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      const wake = () => done();
      const onAbort = () => done(gaveUp(false));
      if (front) slot.waiters.unshift(wake);
      else slot.waiters.push(wake);
      opts?.signal?.addEventListener('abort', onAbort, { once: true });
      if (deadline !== undefined) timer = setTimeout(() => done(gaveUp(true)), Math.max(0, deadline - Date.now()));
    });
  }

  /** Tells the first waiter there may be room (one at a time: no herd of waiters woken for one connection). */
  private wake(slot: Slot<C>): void {
    slot.waiters[0]?.();
  }

  private forgetIfEmpty(slot: Slot<C>): void {
    if (slot.idle.length || slot.busy.size || slot.opening || slot.waiters.length) return;
    for (const [k, s] of this.slots) if (s === slot) this.slots.delete(k);
  }
}
