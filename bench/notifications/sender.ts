/**
 * bench/notifications/sender.ts: what one e-mail costs in CPU, the vault's sender and the SMTP server apart, in one run.
 *
 *   npx ts-node --transpile-only bench/notifications/sender.ts [--n 3000] [--c 4]
 *
 * The vault's EmailSender (the real class: pooled nodemailer, STARTTLS + AUTH, a rendered approval.requested message
 * with its text and HTML parts) sends `--n` messages from `--c` concurrent senders to the test SMTP server
 * (test/support/smtp-server.ts, `headersOnly`: its own process). Baseline, interleaved with it in the same run: the same
 * pooled transport sending a message composed beforehand (`raw`: no MIME composition), the floor of an SMTP
 * conversation over TLS. For each: messages/s, CPU ms per message of this process (the sender), of the SMTP server's
 * process (/proc/<pid>/stat), and of the whole machine (/proc/stat). This is the cost a checkout request that e-mails
 * three approvers adds, three times over, on a machine where the receiving server shares the cores (bench/notifications).
 */
import { readFileSync } from 'node:fs';
import { createTransport } from 'nodemailer';
import type { AppConfig } from '../../src/config/config';
import { render } from '../../src/notifications/events';
import { EmailSender } from '../../src/notifications/senders/email.sender';
import { startSmtpServer } from '../../test/support/smtp-server';
import { arg, runMain } from '../cli';
import { machineBusySeconds } from '../machine';

const N = Number(arg('n', '3000'));
const C = Number(arg('c', '4'));
if (![N, C].every((x) => Number.isInteger(x) && x > 0)) throw new Error('--n and --c must be positive integers');

/** CPU ms a process has used so far (utime + stime, clock ticks of 10 ms). */
function processCpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function main(): Promise<void> {
  const smtp = await startSmtpServer({ headersOnly: true });
  try {
    const env = smtp.env;
    const config = {
      smtp: { host: env.VAULT_SMTP_HOST, port: Number(env.VAULT_SMTP_PORT), tls: 'starttls', username: smtp.username, password: smtp.password, from: smtp.from, caFile: smtp.caFile },
      notify: { timeoutMs: 10_000, emailDomains: undefined },
    } as unknown as AppConfig;
    const sender = new EmailSender(config);
    sender.onModuleInit();
    const event = {
      id: '6f1f7f6e-0000-4000-8000-000000000001',
      type: 'approval.requested',
      subjectType: 'checkout',
      subjectId: '6f1f7f6e-0000-4000-8000-000000000002',
      createdAt: new Date(),
      payload: { summary: 'alice asks to check out root on db-1 (approval 1 of 1)', requester: 'alice', account: 'root', target: 'db-1', justification: 'INC-4711: disk full' },
    };
    const id = (i: number) => `6f1f7f6e-0000-4000-8000-${String(i).padStart(12, '0')}`;
    const vault = (i: number) =>
      sender.send({ id: id(i), eventType: event.type, to: `approver${i % 3}@example.com`, channel: { id: null, name: 'e-mail', kind: 'email', config: {}, secret: null } }, render({ id: id(i) }, event, 'https://vault.example.com'), AbortSignal.timeout(10_000));
    const pool = createTransport({ host: smtp.host, port: smtp.port, requireTLS: true, auth: { user: smtp.username, pass: smtp.password }, tls: { ca: smtp.caPem }, pool: true, maxConnections: C, maxMessages: 100 });
    const m = render({ id: id(0) }, event, 'https://vault.example.com');
    const raw = (i: number) =>
      `From: PAM vault <${smtp.from}>\r\nTo: approver${i % 3}@example.com\r\nSubject: ${m.subject}\r\nMessage-ID: <${id(i)}@vault>\r\nX-Vault-Delivery: ${id(i)}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${m.text.replace(/\n/g, '\r\n')}\r\n`;
    const baseline = (i: number) => pool.sendMail({ envelope: { from: smtp.from, to: [`approver${i % 3}@example.com`] }, raw: raw(i) });

    const run = async (send: (i: number) => Promise<unknown>, n: number) => {
      const [cpu0, server0, machine0, t0] = [process.cpuUsage(), processCpuMs(smtp.pid), machineBusySeconds(), performance.now()];
      let next = 0;
      await Promise.all(Array.from({ length: C }, async () => { while (next < n) await send(next++); }));
      const cpu = process.cpuUsage(cpu0);
      return { perSec: (n * 1000) / (performance.now() - t0), sender: (cpu.user + cpu.system) / 1000 / n, server: (processCpuMs(smtp.pid) - server0) / n, machine: ((machineBusySeconds() - machine0) * 1000) / n };
    };
    await run(vault, 200); // warm-up: connections, TLS, JIT
    await run(baseline, 200);
    const rounds: Record<'vault' | 'baseline', Array<Awaited<ReturnType<typeof run>>>> = { vault: [], baseline: [] };
    for (let r = 0; r < 4; r++) {
      for (const mode of r % 2 ? (['baseline', 'vault'] as const) : (['vault', 'baseline'] as const)) rounds[mode].push(await run(mode === 'vault' ? vault : baseline, N / 4));
    }
    const avg = (mode: 'vault' | 'baseline', k: 'perSec' | 'sender' | 'server' | 'machine') => rounds[mode].reduce((s, x) => s + x[k], 0) / rounds[mode].length;
    const line = (mode: 'vault' | 'baseline', label: string) =>
      `${label.padEnd(44)} ${avg(mode, 'perSec').toFixed(0).padStart(6)}/s   sender ${avg(mode, 'sender').toFixed(2)} ms   SMTP server ${avg(mode, 'server').toFixed(2)} ms   machine ${avg(mode, 'machine').toFixed(2)} ms`;
    process.stdout.write(
      [
        '',
        `bench/notifications/sender: ${N} e-mails each way, ${C} at a time, STARTTLS + AUTH, pooled connections; CPU per message`,
        line('vault', "vault's EmailSender (composed by nodemailer)"),
        line('baseline', 'baseline: the same pool, a raw message'),
        `the vault's sender / baseline: ${(avg('vault', 'sender') / avg('baseline', 'sender')).toFixed(2)}× the CPU (what MIME composition adds); the SMTP server spends ${avg('vault', 'server').toFixed(2)} ms of its own per message`,
        '',
      ].join('\n'),
    );
    pool.close();
    sender.beforeApplicationShutdown();
  } finally {
    await smtp.stop();
  }
}

runMain(module, main);
