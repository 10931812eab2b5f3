import { Inject, Injectable } from '@nestjs/common';
import { BaseClient, custom, Issuer, TokenSet } from 'openid-client';
import { DomainException } from '../../common/errors';
import { APP_CONFIG, AppConfig } from '../../config/config';
import { SecretBoxService } from '../../crypto/secret-box.service';
import { issuerIsSafe } from './oidc.dto';
import { OidcProviderEntity } from './oidc-provider.entity';

/** How long any call to an identity provider may take (discovery, JWKS, token, device authorization). */
const IDP_TIMEOUT_MS = 10_000;

/** Where the provider's client secret is bound (a ciphertext copied to another provider's row fails to decrypt). */
export const clientSecretRef = (name: string) => ({ table: 'oidc_providers', rowId: name, column: 'client_secret' });

/**
 * The openid-client relying party of each provider (openid-client 5, a certified RP): discovered once and kept until
 * the provider's row changes. The discovery document must name the configured issuer exactly, and every endpoint it
 * gives must be https (http only on a loopback host), like the issuer. openid-client verifies each ID token (signature
 * against the issuer's JWKS, refetched when a token names an unknown key — at most once a minute — issuer, audience,
 * expiry, nonce) and does PKCE and state.
 */
@Injectable()
export class OidcClients {
  private readonly cache = new Map<string, { version: string; client: Promise<BaseClient> }>();

  constructor(
    private readonly secretBox: SecretBoxService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    custom.setHttpOptionsDefaults({ timeout: IDP_TIMEOUT_MS });
  }

  /** The redirect URI of this vault (register it at the identity provider). */
  redirectUri(): string {
    const base = (this.config.notify.publicUrl ?? `http://localhost:${this.config.port}`).replace(/\/+$/, '');
    return `${base}/v1/auth/oidc/callback`;
  }

  /** The provider's client (discovering it the first time, or after the row changed); 502 OIDC_PROVIDER_UNAVAILABLE when discovery fails. */
  async client(p: OidcProviderEntity): Promise<BaseClient> {
    const version = `${p.issuer}|${p.clientId}|${p.updatedAt.toISOString()}`;
    const hit = this.cache.get(p.name);
    if (hit?.version === version) return hit.client;
    const client = this.discover(p);
    this.cache.set(p.name, { version, client });
    client.catch(() => {
      // a failed discovery is not kept: the next sign-in tries again
      if (this.cache.get(p.name)?.client === client) this.cache.delete(p.name);
    });
    return client;
  }

  /** Forget a removed provider. */
  forget(name: string): void {
    this.cache.delete(name);
  }

  /** The device flow's one token request (no waiting here: the CLI polls the vault) and the ID token's verification. */
  async deviceGrant(client: BaseClient, deviceCode: string): Promise<TokenSet> {
    const tokens = await client.grant({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: deviceCode });
    if (!tokens.id_token) throw new DomainException('OIDC_TOKEN_INVALID', 'the identity provider answered without an ID token');
    // what openid-client's own DeviceFlowHandle.poll does with the answer
    const verifier = client as unknown as { validateIdToken(t: TokenSet, nonce: undefined, returnedBy: 'token'): Promise<unknown> };
    await verifier.validateIdToken(tokens, undefined, 'token');
    return tokens;
  }

  private async discover(p: OidcProviderEntity): Promise<BaseClient> {
    let issuer: Issuer<BaseClient>;
    try {
      issuer = await Issuer.discover(p.issuer);
    } catch {
      throw unavailable(p.name, 'its discovery document could not be read');
    }
    const meta = issuer.metadata;
    if (trimSlash(meta.issuer) !== trimSlash(p.issuer)) throw unavailable(p.name, 'its discovery document names another issuer');
    // http only for a loopback issuer (a test IdP, one on this machine): a remote https issuer's endpoints are https too
    const plainAllowed = p.issuer.startsWith('http:');
    for (const endpoint of [meta.authorization_endpoint, meta.token_endpoint, meta.jwks_uri, meta.device_authorization_endpoint, meta.userinfo_endpoint]) {
      if (endpoint === undefined) continue;
      if (!issuerIsSafe(endpoint) || (!plainAllowed && !String(endpoint).startsWith('https:'))) throw unavailable(p.name, 'an endpoint of its discovery document is not https');
    }
    const algs = (meta.id_token_signing_alg_values_supported as string[] | undefined) ?? ['RS256'];
    const alg = algs.includes('RS256') ? 'RS256' : algs.find((a) => a !== 'none' && !a.startsWith('HS'));
    if (!alg) throw unavailable(p.name, 'it signs ID tokens with no algorithm the vault accepts');
    const secret = p.clientSecret ? this.secretBox.decrypt(clientSecretRef(p.name), p.clientSecret) : undefined;
    return new issuer.Client({
      client_id: p.clientId,
      ...(secret === undefined ? { token_endpoint_auth_method: 'none' } : { client_secret: secret }),
      redirect_uris: [this.redirectUri()],
      response_types: ['code'],
      id_token_signed_response_alg: alg,
    });
  }
}

const trimSlash = (s: string) => s.replace(/\/+$/, '');
const unavailable = (name: string, why: string) => new DomainException('OIDC_PROVIDER_UNAVAILABLE', `identity provider ${name}: ${why}`);
