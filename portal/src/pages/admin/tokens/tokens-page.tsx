import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useId, useState } from 'react';
import { api, ok, withMfa } from '../../../api/client';
import { MoreButton, usePagedList } from '../../../api/lists';
import { ErrorMessage } from '../../../ui/errors';
import { Loading, Page, Section } from '../../../ui/page';
import { StepUpAction } from '../../../ui/step-up';
import { Disclosure } from '../shared/disclosure';
import { CheckboxGroup, TextField } from '../shared/fields';
import { DataTable, type Column } from '../shared/table';
import { SERVICE_TOKEN_ROLES, type ServiceTokenRole } from '../users/roles';
import type { ServiceTokenView } from '../views';
import { StatusBadge, useNow, When } from '../../../ui/format';

function tokenStatus(t: ServiceTokenView): string {
  if (t.revokedAt) return 'revoked';
  if (t.expiresAt && new Date(t.expiresAt).getTime() <= Date.now()) return 'expired';
  return 'active';
}

/** `/tokens`: service tokens for schedulers and read-only auditors (admin). */
export function TokensPage() {
  const queries = useQueryClient();
  const list = usePagedList<ServiceTokenView>('/v1/service-tokens', {});
  const revoke = async (id: string, code: string) => {
    await api.DELETE('/v1/service-tokens/{id}', withMfa(code, { params: { path: { id } } }));
    await queries.invalidateQueries();
  };
  const columns: Column<ServiceTokenView>[] = [
    { label: 'Name', cell: (t) => t.name },
    { label: 'Roles', cell: (t) => t.roles.join(', ') },
    { label: 'Status', cell: (t) => <StatusBadge status={tokenStatus(t)} /> },
    { label: 'Expires', cell: (t) => (t.expiresAt ? <When at={t.expiresAt} /> : 'never') },
    { label: 'Created', cell: (t) => <When at={t.createdAt} /> },
    { label: 'Actions', cell: (t) => (tokenStatus(t) === 'active' ? <StepUpAction label={`Revoke ${t.name}`} danger onConfirm={(code) => revoke(t.id, code)} /> : '—') },
  ];
  return (
    <Page title="Service tokens">
      <Section title="Create a service token">
        <Disclosure label="Create a service token">{() => <TokenCreateForm />}</Disclosure>
      </Section>
      <Section title="Tokens">
        <ErrorMessage error={list.error} />
        {list.isPending ? <Loading what="Loading service tokens" /> : <DataTable caption="Service tokens" rows={list.items} columns={columns} empty="No service tokens." />}
        <MoreButton list={list} />
      </Section>
    </Page>
  );
}

/** How long a new token stays on screen before it is taken out of the page (it is shown once, never again). */
const TOKEN_SHOWN_SECONDS = 120;

/**
 * Creates a token. The vault answers the token once: it is kept in this component's state only (never a query cache,
 * web storage or the address), shown with a copy button, and removed from the page when dismissed, after
 * TOKEN_SHOWN_SECONDS, or when the form closes.
 */
function TokenCreateForm() {
  const queries = useQueryClient();
  const [name, setName] = useState('');
  const [roles, setRoles] = useState<ServiceTokenRole[]>(['scheduler']);
  const [expiresAt, setExpiresAt] = useState('');
  const [created, setCreated] = useState<{ name: string; token: string } | null>(null);

  const create = async (code: string) => {
    const body = { name, roles, ...(expiresAt ? { expiresAt: new Date(expiresAt).toISOString() } : {}) };
    const answer = ok(await api.POST('/v1/service-tokens', withMfa(code, { body }))) as { id: string; token: string };
    setCreated({ name, token: answer.token });
    setName('');
    await queries.invalidateQueries();
  };

  return (
    <div className="stack">
      {created && <NewToken name={created.name} token={created.token} onHide={() => setCreated(null)} />}
      <TextField label="Token name" value={name} onChange={setName} required autoComplete="off" hint="What uses it, e.g. nightly-rotation." />
      <CheckboxGroup legend="Roles" options={SERVICE_TOKEN_ROLES} value={roles} onChange={setRoles} hint="Service tokens cannot answer a code, so only these roles." />
      <TextField label="Expires (optional)" value={expiresAt} onChange={setExpiresAt} type="datetime-local" />
      <StepUpAction label="Create token" onConfirm={create} disabled={!name || roles.length === 0} />
    </div>
  );
}

function NewToken({ name, token, onHide }: { name: string; token: string; onHide(): void }) {
  const [until] = useState(() => Date.now() + TOKEN_SHOWN_SECONDS * 1000);
  const now = useNow(1000);
  const [copied, setCopied] = useState('');
  const titleId = useId();
  const left = Math.max(0, Math.ceil((until - now) / 1000));
  useEffect(() => {
    if (left === 0) onHide();
  }, [left, onHide]);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(token);
      setCopied('Token copied');
    } catch {
      setCopied('Copying is not available here: select the token and copy it yourself');
    }
  };
  return (
    <section className="secret-box stack" aria-labelledby={titleId}>
      <h3 id={titleId}>Token for {name}</h3>
      <p role="status">Copy it now: the vault shows it only this once.</p>
      <p>
        <code className="secret" data-testid="new-service-token">
          {token}
        </code>
      </p>
      <div className="actions">
        <button type="button" className="primary" onClick={() => void copy()}>
          Copy token
        </button>
        <button type="button" onClick={onHide}>
          Hide token
        </button>
      </div>
      <p className="muted">Leaves this page in {left} s.</p>
      <p role="status" className="muted">
        {copied}
      </p>
    </section>
  );
}
