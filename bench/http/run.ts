/**
 * bench/http: what the HTTP platform costs per request — the "measure, then choose" of issue 17 (Express vs Fastify
 * under NestJS), beside a bare Node.js server, in one run.
 *
 *   npx ts-node --transpile-only bench/http/run.ts [--n 20000] [--c 1,16] [--vault]
 *
 * Each server answers `GET /live` with `{"status":"ok"}` and `POST /echo` (a 200-byte JSON body, parsed and
 * validated nowhere) with a small JSON answer; all run in this process, one at a time, driven by the same keep-alive
 * client from this process. The figure is this process's CPU per request (client + server: the client's share is
 * the same for every row, so the differences are the servers') and requests/s.
 *   node:      http.createServer, JSON.parse/stringify by hand — the floor
 *   express:   NestJS 11 on @nestjs/platform-express (Express 5), one controller, no logger, no middleware
 *   fastify:   NestJS 11 on @nestjs/platform-fastify (Fastify 5), the same controller
 *   --vault:   also the vault itself (startTestVault): GET /health/live (no database) and GET /v1/me (one query for
 *              the bearer token) — what the vault's own middleware (security headers, pino-http request logging,
 *              body parser, guards, exception filter) adds on top of the platform
 */
import { Body, Controller, Get, HttpCode, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { arg, runMain } from '../cli';

const N = Number(arg('n', '20000'));
const CONCURRENCY = arg('c', '1,16').split(',').map(Number);
const WITH_VAULT = process.argv.includes('--vault');
const BODY = JSON.stringify({ accountId: '7f6c1a3e-2b7d-4e59-9a61-0c1d2e3f4a5b', justification: 'x'.repeat(120) });

@Controller()
class BenchController {
  @Get('live')
  live(): object {
    return { status: 'ok' };
  }

  @Post('echo')
  @HttpCode(200)
  echo(@Body() body: { accountId?: string }): object {
    return { id: body.accountId ?? null, status: 'active' };
  }
}

@Module({ controllers: [BenchController] })
class BenchModule {}

interface Target {
  port: number;
  close(): Promise<void>;
}

async function bare(): Promise<Target> {
  const server = http.createServer((req, res) => {
    const send = (obj: object) => {
      const s = JSON.stringify(obj);
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(s) });
      res.end(s);
    };
    if (req.method === 'GET') return send({ status: 'ok' });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { accountId?: string };
      send({ id: body.accountId ?? null, status: 'active' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

async function nest(platform: 'express' | 'fastify'): Promise<Target> {
  const app = platform === 'express' ? await NestFactory.create(BenchModule, { logger: false }) : await NestFactory.create(BenchModule, new FastifyAdapter(), { logger: false });
  await app.listen(0, '127.0.0.1');
  return { port: (app.getHttpServer().address() as AddressInfo).port, close: () => app.close() };
}

/** `n` requests from `c` keep-alive workers: requests/s and this process's CPU ms per request. */
export async function loop(port: number, c: number, n: number, req: { method: 'GET' | 'POST'; path: string; auth?: string; body?: string }): Promise<{ rps: number; cpuMs: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  const headers: Record<string, string> = {};
  if (req.auth) headers.Authorization = req.auth;
  if (req.body) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = String(Buffer.byteLength(req.body));
  }
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port, path: req.path, method: req.method, agent, headers }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${req.method} ${req.path} → ${res.statusCode}`))));
      });
      r.on('error', reject);
      r.end(req.body);
    });
  let started = 0;
  const run = async (count: number) => {
    started = 0;
    await Promise.all(Array.from({ length: c }, async () => {
      while (started < count) {
        started++;
        await one();
      }
    }));
  };
  await run(Math.min(2000, n)); // warm-up (JIT, sockets)
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run(n);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  return { rps: n / seconds, cpuMs: (cpu.user + cpu.system) / 1000 / n };
}

async function main(): Promise<void> {
  const rows: string[] = [];
  const measure = async (name: string, t: Target, reqs: Array<{ label: string; method: 'GET' | 'POST'; path: string; auth?: string; body?: string; n?: number }>) => {
    try {
      for (const r of reqs) {
        for (const c of CONCURRENCY) {
          const m = await loop(t.port, c, r.n ?? N, r);
          rows.push(`| ${name} | ${r.label} | ${c} | ${m.rps.toFixed(0)} | ${(m.cpuMs * 1000).toFixed(0)} µs |`);
          process.stderr.write(`${rows[rows.length - 1]}\n`);
        }
      }
    } finally {
      await t.close();
    }
  };
  const plain = [
    { label: 'GET /live', method: 'GET' as const, path: '/live' },
    { label: 'POST /echo', method: 'POST' as const, path: '/echo', body: BODY },
  ];
  await measure('node http', await bare(), plain);
  await measure('Nest + Express 5', await nest('express'), plain);
  await measure('Nest + Fastify 5', await nest('fastify'), plain);
  if (WITH_VAULT) {
    // loaded only here: the test support starts nothing until asked
    const { startTestVault } = await import('../../test/support/vault');
    const v = await startTestVault();
    await v.app.listen(0, '127.0.0.1');
    const port = (v.app.getHttpServer().address() as AddressInfo).port;
    const auth = (await v.admin()).auth;
    await measure('vault (Express)', { port, close: () => v.close() }, [
      { label: 'GET /health/live', method: 'GET', path: '/health/live' },
      { label: 'GET /v1/me', method: 'GET', path: '/v1/me', auth, n: Math.min(N, 5000) },
    ]);
  }
  process.stdout.write(['', '| server | request | c | requests/s | CPU per request (this process: client + server) |', '|---|---|---|---|---|', ...rows, ''].join('\n'));
}

runMain(module, main);
