import { constants, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { AddressInfo, createServer, Server, Socket } from 'node:net';

/**
 * An impostor MySQL server (node:net) speaking just enough of the protocol to see what a client would hand it:
 * the initial handshake packet (without the SSL capability: it speaks no TLS), then, after
 * the client's handshake response, optionally an auth switch to a plugin that would reveal the password
 * (`mysql_clear_password`, or `sha256_password`, for which it answers a public-key request with its own RSA key and
 * decrypts what comes back). It records every byte it receives.
 */

export type SwitchPlugin = 'mysql_clear_password' | 'sha256_password';

export interface FakeMysqlOptions {
  /** Ask for this auth switch after the handshake response. */
  switchTo?: SwitchPlugin;
}

export interface FakeMysqlServer {
  host: string;
  port: number;
  /** Every byte received from all clients, in order. */
  received(): Buffer;
  /** The payloads of the packets received (length/sequence headers removed). */
  packets(): Buffer[];
  /** Passwords the impostor recovered: cleartext answers, RSA-decrypted sha256_password answers. */
  recoveredPasswords(): string[];
  /** Whether the client answered the auth switch at all (any packet after it was sent). */
  answeredSwitch(): boolean;
  close(): Promise<void>;
}

const CAPS = {
  LONG_PASSWORD: 0x1,
  FOUND_ROWS: 0x2,
  LONG_FLAG: 0x4,
  CONNECT_WITH_DB: 0x8,
  PROTOCOL_41: 0x200,
  TRANSACTIONS: 0x2000,
  SECURE_CONNECTION: 0x8000,
  MULTI_RESULTS: 0x20000,
  PLUGIN_AUTH: 0x80000,
  PLUGIN_AUTH_LENENC_CLIENT_DATA: 0x200000,
};

function packet(seq: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUIntLE(payload.length, 0, 3);
  head[3] = seq & 0xff;
  return Buffer.concat([head, payload]);
}

function handshake(scramble: Buffer): Buffer {
  const caps = CAPS.LONG_PASSWORD | CAPS.FOUND_ROWS | CAPS.LONG_FLAG | CAPS.CONNECT_WITH_DB | CAPS.PROTOCOL_41 | CAPS.TRANSACTIONS | CAPS.SECURE_CONNECTION | CAPS.MULTI_RESULTS | CAPS.PLUGIN_AUTH | CAPS.PLUGIN_AUTH_LENENC_CLIENT_DATA;
  const lower = Buffer.alloc(2);
  lower.writeUInt16LE(caps & 0xffff);
  const upper = Buffer.alloc(2);
  upper.writeUInt16LE(caps >>> 16);
  const id = Buffer.alloc(4);
  id.writeUInt32LE(42);
  return Buffer.concat([
    Buffer.from([0x0a]),
    Buffer.from('5.5.5-10.11.0-MariaDB-impostor\0'),
    id,
    scramble.subarray(0, 8),
    Buffer.from([0]),
    lower,
    Buffer.from([0x21]), // utf8_general_ci
    Buffer.from([0x02, 0x00]), // SERVER_STATUS_AUTOCOMMIT
    upper,
    Buffer.from([21]),
    Buffer.alloc(10),
    scramble.subarray(8, 20),
    Buffer.from([0]),
    Buffer.from('mysql_native_password\0'),
  ]);
}

/** xor with the scramble, rotating (what sha256_password does before RSA-encrypting). */
function xorRotating(data: Buffer, scramble: Buffer): Buffer {
  return Buffer.from(data.map((b, i) => b ^ scramble[i % scramble.length]));
}

export async function startFakeMysql(opts: FakeMysqlOptions = {}): Promise<FakeMysqlServer> {
  const chunks: Buffer[] = [];
  const packets: Buffer[] = [];
  const recovered: string[] = [];
  let switchSent = false;
  let answered = false;
  const sockets = new Set<Socket>();
  const rsa = opts.switchTo === 'sha256_password' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : undefined;

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    const scramble = Buffer.from(randomBytes(20).map((b) => (b % 94) + 33)); // printable, no NUL (as real servers send)
    let buffered = Buffer.alloc(0);
    let stage: 'response' | 'switched' | 'key-sent' | 'done' = 'response';
    socket.write(packet(0, handshake(scramble)));
    socket.on('data', (data) => {
      chunks.push(Buffer.from(data));
      buffered = Buffer.concat([buffered, data]);
      while (buffered.length >= 4) {
        const len = buffered.readUIntLE(0, 3);
        if (buffered.length < 4 + len) break;
        const seq = buffered[3];
        const payload = buffered.subarray(4, 4 + len);
        buffered = buffered.subarray(4 + len);
        packets.push(Buffer.from(payload));
        if (switchSent) answered = true;
        if (stage === 'response') {
          if (!opts.switchTo) {
            stage = 'done';
            socket.end();
            return;
          }
          socket.write(packet(seq + 1, Buffer.concat([Buffer.from([0xfe]), Buffer.from(`${opts.switchTo}\0`), scramble, Buffer.from([0])])));
          switchSent = true;
          stage = 'switched';
        } else if (stage === 'switched' && opts.switchTo === 'sha256_password' && len === 1 && payload[0] === 1 && rsa) {
          const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
          socket.write(packet(seq + 1, Buffer.concat([Buffer.from([0x01]), Buffer.from(pem)])));
          stage = 'key-sent';
        } else if (stage === 'key-sent' && rsa) {
          const plain = privateDecrypt({ key: rsa.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, payload);
          recovered.push(xorRotating(plain, scramble).toString('utf8').replace(/\0$/, ''));
          stage = 'done';
          socket.end();
        } else {
          if (opts.switchTo === 'mysql_clear_password') recovered.push(payload.toString('utf8').replace(/\0$/, ''));
          stage = 'done';
          socket.end();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    received: () => Buffer.concat(chunks),
    packets: () => [...packets],
    recoveredPasswords: () => [...recovered],
    answeredSwitch: () => answered,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
