import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { BeforeApplicationShutdown, Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { createTransport, Transporter } from 'nodemailer';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { DeliveryError, OutgoingDelivery, RenderedMessage, Sender } from './sender';

type Smtp = NonNullable<AppConfig['smtp']>;

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1)$/;

/** Node's TLS verification failures (a constant from OpenSSL or Node, never a message). */
const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|CERT_|HOSTNAME_MISMATCH|ERR_OSSL_)/;

/**
 * E-mail through the vault's SMTP server (VAULT_SMTP_*): to a person (`d.to`) or to an e-mail channel's fixed
 * addresses. STARTTLS is required for `starttls` (nodemailer's requireTLS: no AUTH and no message in clear), `tls` is
 * TLS from the first byte, `none` is allowed for a loopback server only; the server's certificate is always verified
 * (against VAULT_SMTP_CA_FILE when set, else the system's CAs). Connections are pooled (up to 4, as many as the
 * deliverer sends to one channel at once; each reused for up to 100 messages): a new SMTP session per message (TLS
 * handshake, greeting, AUTH) capped delivery at a few dozen e-mails a second. A send that misses its deadline closes
 * the pool (a connection stuck mid-conversation is never reused; messages on the others fail and are retried with
 * their idempotency key). `Message-ID: <delivery id@vault>` and `X-Vault-Delivery` carry the idempotency key.
 *
 * Errors are DeliveryErrors with stable codes: SMTP_UNREACHABLE, SMTP_TLS_FAILED, SMTP_AUTH_FAILED, SMTP_TEMPORARY
 * (a 4xx answer: retried), SMTP_REJECTED (a 5xx answer: not retried), TIMEOUT, SMTP_FAILED, and SMTP_NOT_CONFIGURED,
 * NO_RECIPIENT. Messages hold the SMTP reply code at most, never the server's text (it may echo an address or a
 * credential).
 */
@Injectable()
export class EmailSender implements Sender, OnModuleInit, BeforeApplicationShutdown {
  readonly kind = 'email' as const;
  private ca?: string;
  private pool?: Transporter;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  /** A CA file that cannot be read stops the vault at boot, naming the variable. */
  onModuleInit(): void {
    const caFile = this.config.smtp?.caFile;
    if (!caFile) return;
    try {
      this.ca = readFileSync(caFile, 'utf8');
    } catch (e) {
      throw new Error(`VAULT_SMTP_CA_FILE cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
    }
    if (!this.ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error('VAULT_SMTP_CA_FILE holds no PEM certificate');
  }

  async send(d: OutgoingDelivery, m: RenderedMessage, signal: AbortSignal): Promise<void> {
    const smtp = this.config.smtp;
    if (!smtp) throw new DeliveryError('SMTP_NOT_CONFIGURED', 'no SMTP server is configured (VAULT_SMTP_HOST)', false);
    const to = d.to ? [d.to] : (d.channel.config.to ?? []);
    if (to.length === 0) throw new DeliveryError('NO_RECIPIENT', 'the message has no recipient address', false);
    // an address given before VAULT_NOTIFY_EMAIL_DOMAINS was set (or outside the API) is not mailed either
    const domains = this.config.notify.emailDomains;
    if (domains && to.some((a) => !domains.includes(a.slice(a.lastIndexOf('@') + 1).toLowerCase()))) {
      throw new DeliveryError('EMAIL_DOMAIN_NOT_ALLOWED', 'the address is outside the domains VAULT_NOTIFY_EMAIL_DOMAINS allows', false);
    }
    if (signal.aborted) throw new DeliveryError('TIMEOUT', 'the deadline passed before the SMTP server was reached', true);
    const options = this.transportOptions(smtp);
    const transport = (this.pool ??= this.newPool(options));
    let onAbort!: () => void;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => {
        // a connection stuck mid-conversation must not be reused: the pool goes, the next send opens a new one
        if (this.pool === transport) this.pool = undefined;
        transport.close();
        reject(new DeliveryError('TIMEOUT', 'the SMTP server did not answer in time', true));
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const sending = transport.sendMail({
        from: { name: 'PAM vault', address: smtp.from },
        to,
        subject: m.subject,
        text: m.text,
        html: m.html,
        messageId: `<${d.id}@vault>`,
        headers: { 'X-Vault-Delivery': d.id, 'X-Vault-Event': d.eventType, 'Auto-Submitted': 'auto-generated' },
      });
      sending.catch(() => undefined); // settled by the race below either way
      await Promise.race([sending, aborted]);
    } catch (e) {
      throw smtpError(e, signal);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private newPool(options: ReturnType<EmailSender['transportOptions']>): Transporter {
    const pool = createTransport({ ...options, pool: true, maxConnections: 4, maxMessages: 100 });
    // an idle pooled connection that fails is reported as an event: never let it end the process (the next send reconnects)
    pool.on('error', () => undefined);
    return pool;
  }

  beforeApplicationShutdown(): void {
    this.pool?.close();
    this.pool = undefined;
  }

  private transportOptions(smtp: Smtp) {
    if (smtp.tls === 'none' && !LOOPBACK.test(smtp.host)) {
      throw new DeliveryError('SMTP_TLS_FAILED', "VAULT_SMTP_TLS 'none' is allowed for a loopback server only", false);
    }
    const timeout = this.config.notify.timeoutMs;
    return {
      host: smtp.host,
      port: smtp.port,
      secure: smtp.tls === 'tls',
      requireTLS: smtp.tls === 'starttls',
      ignoreTLS: smtp.tls === 'none',
      auth: smtp.username !== undefined && smtp.password !== undefined ? { user: smtp.username, pass: smtp.password } : undefined,
      tls: {
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2' as const,
        ...(this.ca ? { ca: this.ca } : {}),
        ...(isIP(smtp.host) ? {} : { servername: smtp.host }),
      },
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout,
      dnsTimeout: timeout,
      logger: false,
      debug: false,
      disableFileAccess: true,
      disableUrlAccess: true,
    };
  }
}

interface SmtpFailure {
  code?: unknown;
  responseCode?: unknown;
  cause?: unknown;
  name?: unknown;
}

/** Maps nodemailer's failure to a stable code; the server's reply text never goes into the message. */
export function smtpError(e: unknown, signal?: AbortSignal): DeliveryError {
  if (e instanceof DeliveryError) return e;
  const err = (e ?? {}) as SmtpFailure;
  const code = typeof err.code === 'string' ? err.code : '';
  const reply = typeof err.responseCode === 'number' ? err.responseCode : undefined;
  const tls = tlsReason(e);
  if (code === 'EABORT' || signal?.aborted || err.name === 'TimeoutError' || code === 'ETIMEDOUT') {
    return new DeliveryError('TIMEOUT', 'the SMTP server did not answer in time', true);
  }
  if (tls) return new DeliveryError('SMTP_TLS_FAILED', `TLS with the SMTP server failed: its certificate was not accepted (${tls})`, true);
  if (code === 'ETLS' || code === 'EREQUIRETLS') return new DeliveryError('SMTP_TLS_FAILED', 'TLS with the SMTP server failed (no STARTTLS, or the handshake failed)', true);
  if (code === 'EAUTH' || code === 'ENOAUTH') return new DeliveryError('SMTP_AUTH_FAILED', `the SMTP server refused the login${reply ? ` (${reply})` : ''}`, true);
  if (reply !== undefined && reply >= 400 && reply < 500) return new DeliveryError('SMTP_TEMPORARY', `the SMTP server deferred the message (${reply})`, true);
  if (reply !== undefined && reply >= 500) return new DeliveryError('SMTP_REJECTED', `the SMTP server rejected the message (${reply})`, false);
  if (code === 'ECONNECTION' || code === 'ESOCKET' || code === 'EDNS' || code === 'ECONNREFUSED') {
    return new DeliveryError('SMTP_UNREACHABLE', `the SMTP server could not be reached${systemCode(e)}`, true);
  }
  if (code === 'EENVELOPE') return new DeliveryError('SMTP_REJECTED', 'the SMTP server refused the envelope', false);
  return new DeliveryError('SMTP_FAILED', `sending through the SMTP server failed${code && /^E[A-Z]{2,20}$/.test(code) ? ` (${code})` : ''}`, true);
}

/** The TLS verification code somewhere in the error's chain, if any. */
function tlsReason(e: unknown): string | undefined {
  for (let at: unknown = e, depth = 0; at && typeof at === 'object' && depth < 5; at = (at as SmtpFailure).cause, depth++) {
    // nodemailer wraps the socket's error (ESOCKET) and keeps Node's code as originalCode
    for (const code of [(at as SmtpFailure).code, (at as { originalCode?: unknown }).originalCode]) {
      if (typeof code === 'string' && TLS_CODES.test(code) && /^[A-Z0-9_]{2,60}$/.test(code)) return code;
    }
  }
  return undefined;
}

/** The system error code behind a connection failure (ECONNREFUSED, …), if nodemailer kept it. */
function systemCode(e: unknown): string {
  for (let at: unknown = e, depth = 0; at && typeof at === 'object' && depth < 5; at = (at as SmtpFailure).cause, depth++) {
    for (const code of [(at as SmtpFailure).code, (at as { originalCode?: unknown }).originalCode]) {
      if (typeof code === 'string' && /^E(CONNREFUSED|CONNRESET|HOSTUNREACH|NETUNREACH|NOTFOUND|AI_AGAIN|PIPE)$/.test(code)) return ` (${code})`;
    }
  }
  return '';
}
