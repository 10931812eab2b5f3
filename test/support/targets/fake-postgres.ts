import { randomBytes } from 'node:crypto';
import { createServer, Server, Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

/**
 * An impostor PostgreSQL server (node:net), speaking just enough of the protocol to ask a client for its password
 * the unsafe ways: after the startup message it answers AuthenticationCleartextPassword (`cleartext`),
 * AuthenticationMD5Password (`md5`), AuthenticationOk straight away and then ReadyForQuery (`ok`, what a `trust`
 * server or a fake would do), AuthenticationSASL offering only SCRAM-SHA-256 (`sasl-no-plus`, over TLS: a
 * server refusing channel binding), or a whole SCRAM exchange without knowing the verifier (`scram-bogus`: its final
 * server signature is random, then AuthenticationOk and ReadyForQuery), or the same with a SCRAM challenge asking for
 * only 1024 iterations (`scram-low-iterations`: a proof cheap to brute-force). Every byte a client sends after its
 * startup message is recorded.
 */
export type FakeAuthMode = 'cleartext' | 'md5' | 'ok' | 'sasl-no-plus' | 'scram-bogus' | 'scram-low-iterations';

export interface FakePostgres {
  host: string;
  port: number;
  /** Everything clients sent after their startup message (all connections, in order). */
  received(): Buffer;
  /** The typed messages in {@link received} (type byte as a letter): `p` would be a password / SASL response, `Q`/`P` a statement. */
  messageTypes(): string[];
  /** How many clients got as far as a startup message. */
  startups(): number;
  stop(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function answer(mode: FakeAuthMode): Buffer {
  switch (mode) {
    case 'cleartext':
      return message('R', int32(3));
    case 'md5':
      return message('R', Buffer.concat([int32(5), Buffer.from([1, 2, 3, 4])]));
    case 'ok':
      return Buffer.concat([
        message('R', int32(0)),
        message('S', Buffer.from('server_version\u000018.0\u0000', 'latin1')),
        message('K', Buffer.concat([int32(4242), int32(1234)])),
        message('Z', Buffer.from('I')),
      ]);
    case 'sasl-no-plus':
    case 'scram-bogus':
    case 'scram-low-iterations':
      return message('R', Buffer.concat([int32(10), Buffer.from('SCRAM-SHA-256\u0000\u0000', 'latin1')]));
  }
}

/**
 * `scram-bogus`: answers the client's SASL messages as a server that does not hold the verifier would (its own salt,
 * a random server signature), then says the login is OK.
 */
function scramStep(socket: Socket, msg: Buffer, step: number, iterations: number): void {
  if (step === 0) {
    // SASLInitialResponse: mechanism\0, int32 length, client-first-message "n,,n=*,r=<nonce>"
    const data = msg.subarray(msg.indexOf(0) + 5).toString('latin1');
    const nonce = /r=([^,]+)/.exec(data)?.[1] ?? '';
    const first = `r=${nonce}${randomBytes(12).toString('base64')},s=${randomBytes(16).toString('base64')},i=${iterations}`;
    socket.write(message('R', Buffer.concat([int32(11), Buffer.from(first, 'latin1')])));
  } else if (step === 1) {
    socket.write(Buffer.concat([
      message('R', Buffer.concat([int32(12), Buffer.from(`v=${randomBytes(32).toString('base64')}`, 'latin1')])),
      message('R', int32(0)),
      message('Z', Buffer.from('I')),
    ]));
  }
}

export async function startFakePostgres(mode: FakeAuthMode, opts: { tls?: { key: string; cert: string } } = {}): Promise<FakePostgres> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  let startups = 0;

  const serve = (socket: Socket) => {
    let buf = Buffer.alloc(0);
    let started = false;
    let typed = Buffer.alloc(0);
    let saslStep = 0;
    const afterStartup = (d: Buffer) => {
      chunks.push(Buffer.from(d));
      if (mode !== 'scram-bogus' && mode !== 'scram-low-iterations') return;
      typed = Buffer.concat([typed, d]);
      while (typed.length >= 5 && typed.length >= 1 + typed.readInt32BE(1)) {
        const end = 1 + typed.readInt32BE(1);
        if (typed[0] === 0x70) scramStep(socket, typed.subarray(5, end), saslStep++, mode === 'scram-low-iterations' ? 1024 : 4096); // 'p'
        typed = typed.subarray(end);
      }
    };
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      if (started) {
        afterStartup(d);
        return;
      }
      buf = Buffer.concat([buf, d]);
      if (buf.length < 8) return;
      const len = buf.readInt32BE(0);
      if (buf.length < len) return;
      const code = buf.readInt32BE(4);
      const rest = buf.subarray(len);
      buf = Buffer.alloc(0);
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        if (code === SSL_REQUEST && opts.tls) {
          socket.removeAllListeners('data');
          socket.write('S');
          const secure = new TLSSocket(socket, { isServer: true, key: opts.tls.key, cert: opts.tls.cert });
          sockets.add(secure);
          serve(secure);
        } else {
          socket.write('N');
        }
        return;
      }
      // the startup message: ask for the password the way this impostor does
      started = true;
      startups++;
      socket.write(answer(mode));
      if (rest.length) afterStartup(Buffer.from(rest));
    });
  };

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    serve(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;

  return {
    host: '127.0.0.1',
    port,
    received: () => Buffer.concat(chunks),
    messageTypes: () => {
      const all = Buffer.concat(chunks);
      const types: string[] = [];
      for (let i = 0; i + 5 <= all.length; ) {
        types.push(String.fromCharCode(all[i]));
        i += 1 + all.readInt32BE(i + 1);
      }
      return types;
    },
    startups: () => startups,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
