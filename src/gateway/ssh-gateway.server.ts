import { randomUUID } from 'node:crypto';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { AuthContext, Connection, Server, utils } from 'ssh2';
import { DataSource } from 'typeorm';
import type { Actor } from '../common/actor';
import { Clock } from '../common/clock';
import { APP_CONFIG, AppConfig } from '../config/config';
import { SecretBoxService } from '../crypto/secret-box.service';
import { errorType, INSTANCE_ID } from '../database/claimed-work';
import { UnitOfWork } from '../database/unit-of-work';
import { MetricsService } from '../metrics/metrics.service';
import { GatewayChannels } from './gateway-channels';
import { Grant, GatewayGrants } from './gateway-grants';
import { GatewayStore, TicketMode } from './gateway-store';
import { GatewayHostKey, loadOrCreateHostKey } from './host-key';
import { LiveGatewaySession } from './live-session';
import { RecordingService } from './recording/recording.service';
import { GatewaySessionTracker } from './session-tracker';
import { ticketHash } from './tickets';
import { connectUpstream, sshNativeCrypto, UpstreamError } from './upstream';

/** The methods a client may try: publickey (the ticket is the user name) or the ticket as the password. */
const METHODS: AuthContext['method'][] = ['publickey', 'password', 'keyboard-interactive'];
/** Failed attempts before the connection is dropped; refusals audited per connection at most. */
const MAX_FAILURES = 6;
const MAX_AUDITED_REFUSALS = 3;
/**
 * The ciphers the gateway offers its clients: AES-GCM and AES-CTR, all done by OpenSSL (through ssh2's native crypto
 * binding, which `npm ci` builds: package.json allowScripts). Not chacha20-poly1305, which OpenSSH clients pick first
 * when offered and which ssh2 runs partly in WebAssembly when the binding is missing: offered, it cost ~0.9 ms more per
 * exec round trip and ~10% of the transfer rate (bench/gateway). The client's own order then picks aes128-ctr (with an
 * encrypt-then-MAC SHA-2 MAC) or AES-GCM.
 */
const CLIENT_CIPHERS = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr'] as const;
/**
 * Refusals of tickets that never existed (a scanner guessing the public `vgt_…` shape) are audited at most this many
 * per client address and minute; the rest are counted, and the next audited refusal from that address carries how
 * many were not (`unauditedBefore`). Refusals of a ticket that exists (spent, expired, wrong key, not active) are
 * always audited.
 */
const UNKNOWN_REFUSALS_PER_MINUTE = 10;
const MINUTE_MS = 60_000;
/** OpenSSH's LoginGraceTime, shorter: a connection that has not authenticated by then is dropped. */
const AUTH_GRACE_MS = 60_000;
/** Key queries (no signature) a connection may make: OpenSSH offers each of its keys once. */
const MAX_KEY_QUERIES = 20;
/** Connections not authenticated yet, at most (OpenSSH's MaxStartups): beyond, new ones are dropped at once. */
const MAX_UNAUTHENTICATED = 200;
/** TCP connections at most, authenticated or not (ssh2 drops more at accept). */
const MAX_CONNECTIONS = 2000;

interface ClientState {
  address: string | null;
  failures: number;
  keyQueries: number;
  audited: number;
  closed: boolean;
  /** A ticket is being spent: one session per connection, whatever the client sends meanwhile. */
  opening: boolean;
  /** A usable publickey ticket was offered with another key (audited if the connection ends without a session). */
  wrongKey?: { hash: Buffer; ticketId: string };
  session?: LiveGatewaySession;
}

/** The gateway user as the audit log's actor (only its id is recorded). */
const userActor = (id: string): Actor => ({ id, kind: 'user', name: '', roles: [], mfaEnrolled: true });

/**
 * The SSH gateway: an ssh2 Server in the vault process (VAULT_SSH_GATEWAY_PORT), stateless apart from the database,
 * so any instance serves any ticket. A client authenticates with a ticket (tickets.ts): as its user name with the
 * public key it is bound to, or as its password. The ticket is spent in one statement, the checkout or one-time account
 * is checked again, the upstream connection is opened with the vaulted password (only to the pinned host key), the
 * session row and `gateway.session_started` are written, the recording starts — and only then is the client let in.
 * Nothing the user types is interpreted: channels are forwarded (gateway-channels.ts).
 * Live sessions and how they end: session-tracker.ts.
 */
@Injectable()
export class SshGatewayServer implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('SshGateway');
  private server?: Server;
  private hostKey?: GatewayHostKey;
  private port?: number;
  private stopping = false;
  private unauthenticated = 0;
  private readonly unauthenticatedFrom = new Map<string, number>();
  /** Per client address: this minute's audited refusals of never-issued tickets, and those not audited (unknownRefusal). */
  private readonly unknownRefusals = new Map<string, { since: number; audited: number; unaudited: number }>();
  /** Sockets not authenticated yet → what counts them out again (on authentication or close). */
  private readonly pending = new WeakMap<object, () => void>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly uow: UnitOfWork,
    private readonly store: GatewayStore,
    private readonly grants: GatewayGrants,
    private readonly recordings: RecordingService,
    private readonly sessions: GatewaySessionTracker,
    private readonly secrets: SecretBoxService,
    private readonly clock: Clock,
    private readonly metrics: MetricsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    const gw = this.config.sshGateway;
    if (!gw) return;
    // this instance's view (each instance reports its own): live sessions and clients still authenticating
    this.metrics.stateGauge({
      name: 'vault_gateway_connections',
      help: 'SSH gateway connections held by this instance: live sessions, and clients not authenticated yet',
      label: 'state',
      values: ['live', 'authenticating'],
      read: async () => ({ live: this.sessions.size, authenticating: this.unauthenticated }),
    });
    this.hostKey = await loadOrCreateHostKey(this.dataSource, this.store, this.secrets);
    const server = new Server({ hostKeys: [this.hostKey.privateKeyPem()], ident: 'pam-vault-gateway', algorithms: { cipher: [...CLIENT_CIPHERS] } }, (client, info) =>
      this.onClient(client, info.ip),
    );
    server.on('error', (e: Error) => this.logger.warn({ err: errorType(e) }, 'SSH gateway listener error'));
    // bounded at TCP accept: ssh2 sees a connection only after its identification line and has no timeout before it,
    // so a silent socket would be held for ever; every socket gets the login grace time from accept on
    server.maxConnections = MAX_CONNECTIONS;
    (server as unknown as { _srv: NetServer })._srv.on('connection', (socket: Socket) => this.admit(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(gw.port, gw.bind, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    this.logger.log(
      { host: gw.host, bind: gw.bind, port: this.port, hostKeySha256: `SHA256:${this.hostKey.sha256}`, nativeCrypto: sshNativeCrypto() },
      'SSH gateway listening',
    );
    if (!sshNativeCrypto()) this.logger.warn({}, "SSH gateway: ssh2's native crypto binding is not built (npm ci builds it; needs make and g++): every byte relayed costs about 1.6x the CPU");
    this.sessions.start();
  }

  /** Stops listening, then ends every live session (reason `shutdown`) before the database closes. */
  async onModuleDestroy(): Promise<void> {
    this.stopping = true;
    this.server?.close();
    await this.sessions.stop();
  }

  /** What clients need to reach the gateway; null when it is disabled. */
  endpoint(): { host: string; port: number; hostKey: GatewayHostKey } | null {
    if (!this.config.sshGateway || !this.hostKey || this.port === undefined) return null;
    return { host: this.config.sshGateway.host, port: this.port, hostKey: this.hostKey };
  }

  /** For tests: the live sessions this instance holds. */
  liveSessionIds(): string[] {
    return this.sessions.ids();
  }

  /** For tests: one housekeeping round now (session-tracker.ts). */
  housekeeping(): Promise<void> {
    return this.sessions.housekeeping();
  }

  // ---- authentication ------------------------------------------------------------------------------------------

  /**
   * Every TCP connection counts as unauthenticated from accept on (ssh2 sees it only after its identification line and
   * has no timeout before it): at most MAX_UNAUTHENTICATED, and VAULT_SSH_GATEWAY_PREAUTH_PER_ADDRESS (10) from one
   * address (OpenSSH's PerSourceMaxStartups: one client cannot take every slot) — beyond, dropped at once; each is
   * dropped after the login grace time unless it authenticated by then.
   */
  private admit(socket: Socket): void {
    const from = socket.remoteAddress ?? '?';
    if (this.unauthenticated >= MAX_UNAUTHENTICATED || (this.unauthenticatedFrom.get(from) ?? 0) >= (this.config.sshGateway?.preauthPerAddress ?? 10)) {
      socket.destroy();
      return;
    }
    this.unauthenticated++;
    this.unauthenticatedFrom.set(from, (this.unauthenticatedFrom.get(from) ?? 0) + 1);
    const timer = setTimeout(() => socket.destroy(), AUTH_GRACE_MS);
    timer.unref();
    let counted = true;
    const countOut = () => {
      if (!counted) return;
      counted = false;
      clearTimeout(timer);
      this.unauthenticated--;
      const left = (this.unauthenticatedFrom.get(from) ?? 1) - 1;
      if (left > 0) this.unauthenticatedFrom.set(from, left);
      else this.unauthenticatedFrom.delete(from);
    };
    this.pending.set(socket, countOut);
    socket.once('close', countOut);
  }

  private onClient(client: Connection, address: string | undefined): void {
    const state: ClientState = { address: address ?? null, failures: 0, keyQueries: 0, audited: 0, closed: false, opening: false };
    client.on('error', () => undefined); // a dropped client; its 'close' follows
    // small packets (channel open, exec, exit status, keystrokes) go at once: Nagle + delayed ACK added ~100 ms a round trip
    (client as Connection & { setNoDelay(on: boolean): void }).setNoDelay(true); // ssh2 has it, its types do not
    const grace = setTimeout(() => client.end(), AUTH_GRACE_MS);
    grace.unref();
    client.on('authentication', (ctx) => {
      this.authenticate(client, ctx, state).catch((e: unknown) => {
        this.logger.warn({ err: errorType(e) }, 'SSH gateway authentication failed unexpectedly');
        this.fail(client, ctx, state);
      });
    });
    client.on('ready', () => {
      clearTimeout(grace);
      const socket = (client as unknown as { _sock?: object })._sock;
      if (socket) this.pending.get(socket)?.();
    });
    client.on('close', () => {
      clearTimeout(grace);
      state.closed = true;
      void state.session?.end('client_closed');
      // a usable publickey ticket offered only with other keys: a stolen ticket without its key
      if (!state.session && !state.opening && state.wrongKey) {
        const { hash, ticketId } = state.wrongKey;
        this.auditRefusal(state, { hash, mode: 'publickey', method: 'publickey', why: 'wrong_key', ticketId }).catch((e: unknown) =>
          this.logger.warn({ err: errorType(e) }, 'SSH gateway: a refusal could not be audited'),
        );
      }
    });
  }

  private async authenticate(client: Connection, ctx: AuthContext, state: ClientState): Promise<void> {
    if (this.stopping) return this.fail(client, ctx, state);
    if (ctx.method === 'publickey') {
      const hash = ticketHash(ctx.username);
      if (!hash) return this.fail(client, ctx, state);
      const ticket = await this.store.usableTicket(this.dataSource, hash, this.clock.now());
      const keyMatches = ticket?.mode === 'publickey' && ticket.publicKey !== null && ticket.publicKey.equals(ctx.key.data);
      // the query step (is this key acceptable?): OpenSSH offers each of its keys; a wrong one is no refusal yet
      if (!ctx.signature) {
        if (++state.keyQueries > MAX_KEY_QUERIES) return void client.end();
        if (keyMatches) return ctx.accept();
        // quiet for another key of a usable ticket (OpenSSH offers each of its keys; if none fits, the refusal is
        // audited once when the connection closes unauthenticated); a spent, expired or unknown ticket is a refusal
        if (ticket) {
          state.wrongKey = { hash, ticketId: ticket.id };
          return this.fail(client, ctx, state, { quiet: true });
        }
        return this.refuse(client, ctx, state, hash, 'publickey', 'refused');
      }
      const key = keyMatches ? utils.parseKey(ticket.publicKey as Buffer) : null;
      const signed = key && !(key instanceof Error) && !Array.isArray(key) && ctx.blob && key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true;
      if (!signed) return this.refuse(client, ctx, state, hash, 'publickey', 'wrong_key');
      return this.open(client, ctx, state, hash, 'publickey');
    }
    // what is not even shaped like a ticket (a scanner's `root`/`123456`) is refused without an audit event: only
    // ticket-shaped answers are audited, so unauthenticated clients cannot flood the audit chain
    if (ctx.method === 'password') {
      const hash = ticketHash(ctx.password);
      return hash ? this.open(client, ctx, state, hash, 'password') : this.fail(client, ctx, state);
    }
    if (ctx.method === 'keyboard-interactive') {
      // ssh2 aborts a pending keyboard-interactive exchange when the client sends another request meanwhile
      let aborted = false;
      ctx.once('abort', () => (aborted = true));
      return new Promise<void>((resolve) => {
        ctx.prompt([{ prompt: 'Vault ticket: ', echo: false }], 'pam-vault gateway', '', (answers) => {
          const answer = Array.isArray(answers) ? answers[0] : undefined;
          const hash = typeof answer === 'string' && !aborted ? ticketHash(answer.trim()) : null;
          const done = hash ? this.open(client, ctx, state, hash, 'password', () => aborted) : Promise.resolve(this.fail(client, ctx, state));
          done.catch(() => this.fail(client, ctx, state)).finally(resolve);
        });
      });
    }
    // none (every client's first try), hostbased: the methods a ticket can use are listed
    ctx.reject(METHODS);
  }

  /** Refused, the same answer whatever the reason; too many failures end the connection. */
  private fail(client: Connection, ctx: AuthContext, state: ClientState, o: { quiet?: boolean } = {}): void {
    ctx.reject(METHODS);
    if (!o.quiet && ++state.failures >= MAX_FAILURES) client.end();
  }

  /**
   * A ticket-shaped answer that cannot be used: refused like any other, after it is audited (never the ticket; its id
   * when known) — the refusal is in the log by the time the client hears of it.
   */
  private async refuse(client: Connection, ctx: AuthContext, state: ClientState, hash: Buffer | null, mode: TicketMode, why: string, ticketId?: string): Promise<void> {
    try {
      await this.auditRefusal(state, { hash, mode, method: ctx.method, why, ticketId });
    } finally {
      this.fail(client, ctx, state);
    }
  }

  /**
   * `gateway.ticket_refused` (at most MAX_AUDITED_REFUSALS per connection, and UNKNOWN_REFUSALS_PER_MINUTE per address
   * for tickets that never existed): why, and the ticket's id when it is known.
   */
  private async auditRefusal(state: ClientState, r: { hash: Buffer | null; mode: TicketMode; method: string; why: string; ticketId?: string }): Promise<void> {
    if (state.audited >= MAX_AUDITED_REFUSALS) return;
    state.audited++;
    const known = r.hash && !r.ticketId ? await this.store.refusal(this.dataSource, r.hash, r.mode, this.clock.now()) : null;
    const id = r.ticketId ?? known?.ticketId ?? null;
    const reason = known && known.why !== 'refused' ? known.why : r.why;
    const unauditedBefore = id ? 0 : this.unknownRefusal(state.address ?? 'unknown');
    if (unauditedBefore < 0) return;
    await this.uow.run(({ audit }) =>
      audit({
        type: 'gateway.ticket_refused',
        actor: known?.userId ? userActor(known.userId) : null,
        subjectType: 'gateway_ticket',
        subjectId: id,
        outcome: 'denied',
        details: { ticketId: id, method: r.method, reason, clientAddress: state.address, ...(unauditedBefore > 0 ? { unauditedBefore } : {}) },
      }),
    );
  }

  /**
   * The budget of audited refusals of never-issued tickets per address and minute: -1 when this one is over it (counted,
   * logged once per minute), else how many went unaudited since the last audited one.
   */
  private unknownRefusal(address: string): number {
    const now = performance.now();
    let budget = this.unknownRefusals.get(address);
    if (!budget || now - budget.since > MINUTE_MS) {
      if (this.unknownRefusals.size > 10_000) for (const [a, b] of this.unknownRefusals) if (now - b.since > MINUTE_MS) this.unknownRefusals.delete(a);
      budget = { since: now, audited: 0, unaudited: budget?.unaudited ?? 0 };
      this.unknownRefusals.set(address, budget);
    }
    if (budget.audited >= UNKNOWN_REFUSALS_PER_MINUTE) {
      if (budget.unaudited++ === 0) this.logger.warn({ clientAddress: address }, 'SSH gateway: many unknown tickets from one address; further refusals this minute are counted, not audited');
      return -1;
    }
    budget.audited++;
    const before = budget.unaudited;
    budget.unaudited = 0;
    return before;
  }

  /**
   * Spends the ticket and opens the session: grant checked again, upstream connected (pinned host key), row and
   * `gateway.session_started` written, recording started; then the client is let in. Any failure refuses the client.
   */
  private async open(client: Connection, ctx: AuthContext, state: ClientState, hash: Buffer, mode: TicketMode, aborted: () => boolean = () => false): Promise<void> {
    // one session per connection: a second ticket sent while the first is being spent is refused, not spent
    if (state.opening || state.session) return this.fail(client, ctx, state);
    state.opening = true;
    try {
      await this.openOnce(client, ctx, state, hash, mode, aborted);
    } finally {
      state.opening = false;
    }
  }

  private async openOnce(client: Connection, ctx: AuthContext, state: ClientState, hash: Buffer, mode: TicketMode, aborted: () => boolean): Promise<void> {
    const now = this.clock.now();
    const ticket = await this.store.spendTicket(this.dataSource, hash, mode, now);
    if (!ticket) return this.refuse(client, ctx, state, hash, mode, 'refused');
    const grant = await this.grants.resolve(ticket, now);
    if (!grant) return this.refuse(client, ctx, state, hash, mode, 'not_active', ticket.id);
    let upstream;
    try {
      upstream = await connectUpstream(grant.login);
    } catch (e) {
      await this.upstreamRefused(grant, state, e);
      ctx.reject(METHODS);
      client.end();
      return;
    }
    if (state.closed || this.stopping || aborted()) {
      upstream.end();
      ctx.reject(METHODS);
      return;
    }
    const sessionId = randomUUID();
    await this.uow.run(async ({ em, audit }) => {
      const row = { id: sessionId, ...sessionOf(grant), instanceId: INSTANCE_ID, clientAddress: state.address, startedAt: now };
      await this.store.insertSession(em, row);
      const subject = grant.checkoutId ? { checkoutId: grant.checkoutId } : { ephemeralId: grant.ephemeralId };
      await audit({
        type: 'gateway.session_started',
        actor: userActor(grant.userId),
        subjectType: 'gateway_session',
        subjectId: sessionId,
        details: { sessionId, ...subject, targetId: grant.targetId, account: grant.login.username, clientAddress: state.address, ticketId: grant.ticketId },
      });
    });
    const session = new LiveGatewaySession(sessionId, client, upstream, this.sessions.ended);
    this.sessions.add(session);
    try {
      session.recorder = await this.recordings.start({ sessionId, width: 80, height: 24, term: 'xterm-256color', recordInput: grant.policy.recordInput, startedAt: now });
    } catch (e) {
      this.logger.warn({ sessionId, err: errorType(e) }, 'the recording could not be started: the session is refused');
      ctx.reject(METHODS);
      await session.end('recording_failed');
      return;
    }
    // the client went away, or (keyboard-interactive) its answer was overtaken by another request: never attached
    if (state.closed || aborted()) {
      ctx.reject(METHODS);
      return void (await session.end('client_closed'));
    }
    session.recorder.onFailure(() => void session.end('recording_failed'));
    upstream.on('close', () => void session.end('upstream_closed'));
    upstream.on('error', () => void session.end('error'));
    state.session = session;
    new GatewayChannels(client, upstream, session.recorder, grant.policy).attach();
    ctx.accept();
  }

  private async upstreamRefused(grant: Grant, state: ClientState, e: unknown): Promise<void> {
    const kind = e instanceof UpstreamError ? e.kind : 'unreachable';
    const hostKey = kind === 'host_key_mismatch' || kind === 'host_key_unpinned';
    this.logger.warn({ targetId: grant.targetId, kind }, 'SSH gateway: the upstream connection failed; the client is refused');
    await this.uow.run(({ audit }) =>
      audit({
        type: hostKey ? 'gateway.host_key_mismatch' : 'gateway.upstream_failed',
        actor: userActor(grant.userId),
        subjectType: 'target',
        subjectId: grant.targetId,
        outcome: 'failure',
        details: {
          ticketId: grant.ticketId,
          ...(grant.checkoutId ? { checkoutId: grant.checkoutId } : { ephemeralId: grant.ephemeralId }),
          kind,
          ...(hostKey && e instanceof UpstreamError ? { presentedHostKeySha256: e.presentedSha256 ?? null } : {}),
          clientAddress: state.address,
        },
      }),
    );
  }
}

function sessionOf(g: Grant) {
  return { ticketId: g.ticketId, userId: g.userId, checkoutId: g.checkoutId, ephemeralId: g.ephemeralId, targetId: g.targetId, account: g.login.username };
}
