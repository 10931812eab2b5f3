import { useQuery } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { api, ok, withMfa } from '../../api/client';
import type { components } from '../../api/schema';
import { ErrorMessage } from '../../ui/errors';
import { useNow } from '../../ui/format';
import { Section } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';

type Schemas = components['schemas'];
/** POST /v1/checkouts/{id}/connect, /v1/ephemeral-accounts/{id}/connect. */
export type GatewayTicketView = Schemas['GatewayTicket'];

/** What the ticket is for: the holder's checkout or the vendor's one-time account. */
export type ConnectTo = { checkoutId: string } | { ephemeralId: string };

async function askTicket(to: ConnectTo, code: string, publicKey: string): Promise<GatewayTicketView> {
  const body = publicKey.trim() ? { publicKey: publicKey.trim() } : {};
  if ('checkoutId' in to) return ok(await api.POST('/v1/checkouts/{id}/connect', withMfa(code, { params: { path: { id: to.checkoutId } }, body })));
  return ok(await api.POST('/v1/ephemeral-accounts/{id}/connect', withMfa(code, { params: { path: { id: to.ephemeralId } }, body })));
}

/**
 * Connect through the vault's SSH gateway: a single-use ticket (60 s) for the holder of an active SSH checkout or
 * one-time account, with a fresh code. With a public key pasted, the ticket is the SSH user name and only that key
 * may use it; without, the ticket is the password to type. The password of the account never reaches the browser.
 * The ticket is kept in this component's state only and removed when it expires. Hidden when the vault runs no
 * gateway; `vaultctl ssh` does all of this from a terminal.
 */
export function Connect({ to, active }: { to: ConnectTo; active: boolean }) {
  const gateway = useQuery({
    queryKey: ['gateway'],
    enabled: active,
    staleTime: 300_000,
    queryFn: async () => ok(await api.GET('/v1/gateway')),
  });
  const [publicKey, setPublicKey] = useState('');
  const [ticket, setTicket] = useState<GatewayTicketView | null>(null);
  const keyId = useId();
  if (!active || !gateway.data?.enabled) return null;
  return (
    <Section title="Connect through the SSH gateway">
      <p className="hint">
        The vault logs in for you: the account's password stays in the vault and the session is recorded. Host key <code>SHA256:{gateway.data.hostKeySha256}</code>.
      </p>
      {ticket ? (
        <TicketPanel ticket={ticket} onExpired={() => setTicket(null)} />
      ) : (
        <>
          <div className="field">
            <label htmlFor={keyId}>Your SSH public key (optional)</label>
            <textarea id={keyId} rows={2} spellCheck={false} placeholder="ssh-ed25519 AAAA… you@laptop" value={publicKey} onChange={(e) => setPublicKey(e.target.value)} />
            <p className="hint">With a key, only that key may use the ticket; without, you type the ticket as the password.</p>
          </div>
          <StepUpAction label="Get a connection ticket" confirmLabel="Get ticket" onConfirm={async (code) => setTicket(await askTicket(to, code, publicKey))} />
        </>
      )}
      <ErrorMessage error={gateway.error} />
    </Section>
  );
}

/** The ticket until it expires (then it is removed from the page), with the command and the known_hosts line. */
function TicketPanel({ ticket: t, onExpired }: { ticket: GatewayTicketView; onExpired(): void }) {
  const now = useNow(1000);
  const left = Math.max(0, Math.ceil((new Date(t.expiresAt).getTime() - now) / 1000));
  const [message, setMessage] = useState('');
  if (left === 0) {
    queueMicrotask(onExpired);
    return null;
  }
  const copy = async (what: string, value: string) => {
    try {
      await navigator.clipboard.writeText(value);
      setMessage(`${what} copied`);
    } catch {
      setMessage('Copying is not available here: select the text and copy it yourself');
    }
  };
  return (
    <div className="secret-box stack">
      <dl className="facts">
        <dt>Command</dt>
        <dd>
          <code data-testid="gateway-command">{t.mode === 'publickey' ? `${t.sshCommand} -i <your key>` : t.sshCommand}</code>
        </dd>
        {t.mode === 'password' && (
          <>
            <dt>Password to type (the ticket)</dt>
            <dd>
              <code className="secret" data-testid="gateway-ticket">
                {t.ticket}
              </code>
            </dd>
          </>
        )}
        <dt>known_hosts line</dt>
        <dd>
          <code>{t.gateway.knownHostsLine}</code>
        </dd>
      </dl>
      <div className="actions">
        <button type="button" className="primary" onClick={() => void copy('Command', t.sshCommand)}>
          Copy command
        </button>
        {t.mode === 'password' && (
          <button type="button" onClick={() => void copy('Ticket', t.ticket)}>
            Copy ticket
          </button>
        )}
        <button type="button" onClick={() => void copy('known_hosts line', t.gateway.knownHostsLine)}>
          Copy known_hosts line
        </button>
        <button type="button" onClick={onExpired}>
          Hide now
        </button>
      </div>
      <p className="muted">
        Single use; expires in <span data-testid="ticket-countdown">{left}</span> s.
      </p>
      <p role="status" className="muted">
        {message}
      </p>
    </div>
  );
}
