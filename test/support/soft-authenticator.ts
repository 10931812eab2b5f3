import { createHash, createSign, generateKeyPairSync, KeyObject, randomBytes } from 'node:crypto';
import { isoCBOR } from '@simplewebauthn/server/helpers';

/**
 * A software WebAuthn authenticator for tests, in node (node:crypto only, plus the library's CBOR encoder): an ES256
 * (P-256) key, `none` attestation, authenticator data with the flags a real key sets (UP, UV, AT at registration) and a
 * signature counter the test controls. It answers what @simplewebauthn/browser's startRegistration /
 * startAuthentication would hand the vault, so the vault's verification runs on real signatures.
 *
 * `clone()` is the attack a counter exists for: the same key and credential id, with a counter the test chooses.
 */
export interface SoftAuthenticatorOptions {
  /** The origin the "browser" reports in clientData (default the test vault's default, http://localhost:8080). */
  origin?: string;
  /** The relying party id whose SHA-256 starts authenticatorData (default localhost). */
  rpId?: string;
  /** The first counter value (the one registration reports). */
  counter?: number;
  /** Sets the user-verified flag (default true). */
  userVerified?: boolean;
  /** Backup eligible and backed up (a synced passkey). */
  backedUp?: boolean;
}

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_BE = 0x08;
const FLAG_BS = 0x10;
const FLAG_AT = 0x40;
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64url');

export class SoftAuthenticator {
  readonly credentialId: Buffer;
  readonly aaguid = Buffer.alloc(16);
  origin: string;
  rpId: string;
  /** The counter the next assertion reports is this plus one (or `assert({counter})`). */
  counter: number;
  userVerified: boolean;
  readonly backedUp: boolean;

  constructor(
    opts: SoftAuthenticatorOptions = {},
    private readonly keys: { privateKey: KeyObject; publicKey: KeyObject } = generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    credentialId: Buffer = randomBytes(32),
  ) {
    this.origin = opts.origin ?? 'http://localhost:8080';
    this.rpId = opts.rpId ?? 'localhost';
    this.counter = opts.counter ?? 0;
    this.userVerified = opts.userVerified ?? true;
    this.backedUp = opts.backedUp ?? false;
    this.credentialId = credentialId;
  }

  get id(): string {
    return b64(this.credentialId);
  }

  /** The same key and credential id (a copy of the authenticator), its counter set to `counter`. */
  clone(counter: number): SoftAuthenticator {
    return new SoftAuthenticator({ origin: this.origin, rpId: this.rpId, counter, userVerified: this.userVerified, backedUp: this.backedUp }, this.keys, this.credentialId);
  }

  /** The RegistrationResponseJSON for PublicKeyCredentialCreationOptionsJSON `options` (as from POST …/registrations). */
  register(options: { challenge: string }, over: { origin?: string; challenge?: string; type?: string } = {}): Record<string, unknown> {
    const clientDataJSON = this.clientData(over.type ?? 'webauthn.create', over.challenge ?? options.challenge, over.origin);
    const jwk = this.keys.publicKey.export({ format: 'jwk' });
    const cose = isoCBOR.encode(
      new Map<number, number | Uint8Array>([
        [1, 2], // kty: EC2
        [3, -7], // alg: ES256
        [-1, 1], // crv: P-256
        [-2, Buffer.from(jwk.x as string, 'base64url')],
        [-3, Buffer.from(jwk.y as string, 'base64url')],
      ]),
    );
    const idLength = Buffer.alloc(2);
    idLength.writeUInt16BE(this.credentialId.length);
    const authData = Buffer.concat([this.authDataHead(FLAG_AT, this.counter), this.aaguid, idLength, this.credentialId, Buffer.from(cose)]);
    const attestationObject = isoCBOR.encode(new Map<string, unknown>([['fmt', 'none'], ['attStmt', new Map()], ['authData', authData]]) as never);
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      response: { clientDataJSON: b64(clientDataJSON), attestationObject: b64(attestationObject), transports: ['usb'] },
      clientExtensionResults: {},
      authenticatorAttachment: 'cross-platform',
    };
  }

  /**
   * The AuthenticationResponseJSON for a challenge (PublicKeyCredentialRequestOptionsJSON `options`): the counter moves
   * on by one unless `counter` is given. `challenge`/`origin`/`type` tamper with what is signed.
   */
  assert(options: { challenge: string }, over: { counter?: number; origin?: string; challenge?: string; type?: string; userHandle?: string } = {}): Record<string, unknown> {
    this.counter = over.counter ?? this.counter + 1;
    const clientDataJSON = this.clientData(over.type ?? 'webauthn.get', over.challenge ?? options.challenge, over.origin);
    const authenticatorData = this.authDataHead(0, this.counter);
    const signature = createSign('sha256')
      .update(Buffer.concat([authenticatorData, createHash('sha256').update(clientDataJSON).digest()]))
      .sign(this.keys.privateKey);
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      response: { clientDataJSON: b64(clientDataJSON), authenticatorData: b64(authenticatorData), signature: b64(signature), ...(over.userHandle ? { userHandle: over.userHandle } : {}) },
      clientExtensionResults: {},
      authenticatorAttachment: 'cross-platform',
    };
  }

  /** `X-MFA-Assertion`: base64url of the assertion's JSON. */
  static header(assertion: Record<string, unknown>): string {
    return Buffer.from(JSON.stringify(assertion), 'utf8').toString('base64url');
  }

  private clientData(type: string, challenge: string, origin?: string): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin: origin ?? this.origin, crossOrigin: false }), 'utf8');
  }

  private authDataHead(extraFlags: number, counter: number): Buffer {
    const flags = FLAG_UP | (this.userVerified ? FLAG_UV : 0) | (this.backedUp ? FLAG_BE | FLAG_BS : 0) | extraFlags;
    const count = Buffer.alloc(4);
    count.writeUInt32BE(counter);
    return Buffer.concat([createHash('sha256').update(this.rpId).digest(), Buffer.from([flags]), count]);
  }
}
