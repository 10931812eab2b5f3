import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { api, ok, withMfa } from '../../api/client';
import { canUseSecurityKeys, createCredential } from '../../api/webauthn';
import { useSession } from '../../session';
import { ErrorMessage, Notice } from '../../ui/errors';
import { When } from '../../ui/format';
import { Loading, Section } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { DataTable } from '../admin/shared/table';

const KEYS = ['me', 'webauthn-credentials'];

/**
 * The person's security keys and passkeys: when each was added and last used, whether the vault suspects a copy
 * (a counter that went back: that key is refused until removed), add one (a step-up first: a stolen session must not
 * add an authenticator), remove one (the last way to confirm sign-ins cannot be removed: LAST_FACTOR).
 */
export function SecurityKeys() {
  const queries = useQueryClient();
  const { refresh } = useSession();
  const [notice, setNotice] = useState('');
  const keys = useQuery({ queryKey: KEYS, queryFn: async () => ok(await api.GET('/v1/me/webauthn/credentials')) });

  const changed = async (what: string) => {
    setNotice(what);
    // the session's methods decide whether step-ups offer the key
    await Promise.all([queries.invalidateQueries({ queryKey: KEYS }), refresh()]);
  };
  const remove = async (id: string, name: string, proof: string) => {
    await api.DELETE('/v1/me/webauthn/credentials/{id}', withMfa(proof, { params: { path: { id } } }));
    await changed(`Security key “${name}” removed.`);
  };

  return (
    <Section title="Security keys and passkeys">
      {keys.isPending && <Loading what="Loading your security keys" />}
      <ErrorMessage error={keys.error} />
      {keys.data && (
        <DataTable
          caption="Your security keys"
          rows={keys.data}
          empty="You have no security key yet."
          columns={[
            { label: 'Name', cell: (k) => k.name },
            { label: 'Added', cell: (k) => <When at={k.createdAt} /> },
            { label: 'Last used', cell: (k) => (k.lastUsedAt ? <When at={k.lastUsedAt} /> : 'never') },
            {
              label: 'State',
              cell: (k) =>
                k.flagged ? <span className="badge bad">suspected copy: refused, remove it</span> : <span className="badge ok">{k.backedUp ? 'in use (synced passkey)' : 'in use'}</span>,
            },
            { label: 'Remove', cell: (k) => <StepUpAction label={`Remove ${k.name}`} confirmLabel="Remove" danger onConfirm={(proof) => remove(k.id, k.name, proof)} /> },
          ]}
        />
      )}
      <Notice>{notice}</Notice>
      <AddSecurityKey onAdded={(name) => changed(`Security key “${name}” added.`)} />
    </Section>
  );
}

/** Name the key, confirm with a code or another key, then touch the new key. */
function AddSecurityKey({ onAdded }: { onAdded(name: string): Promise<void> }) {
  const [name, setName] = useState('');
  const nameId = useId();
  if (!canUseSecurityKeys()) return <p className="muted">This browser cannot use security keys or passkeys.</p>;

  const add = async (proof: string) => {
    const label = name.trim();
    const { challengeId, options } = ok(await api.POST('/v1/me/webauthn/registrations', withMfa(proof)));
    const response = await createCredential(options);
    ok(await api.POST('/v1/me/webauthn/registrations/confirm', { body: { challengeId, name: label, response } }));
    setName('');
    await onAdded(label);
  };

  return (
    <div className="stack">
      <div className="field">
        <label htmlFor={nameId}>Name of the new key</label>
        <input id={nameId} maxLength={60} placeholder="e.g. YubiKey on my keyring" value={name} onChange={(e) => setName(e.target.value)} />
      </div>
      <StepUpAction label="Add security key" confirmLabel="Continue" onConfirm={add} disabled={!name.trim()} />
    </div>
  );
}
