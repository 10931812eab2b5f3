import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, ok, withMfa } from '../../../api/client';
import type { Role } from '../../../api/views';
import { ErrorMessage, Notice } from '../../../ui/errors';
import { StatusBadge } from '../../../ui/format';
import { Loading, Page, Section } from '../../../ui/page';
import { StepUpAction } from '../../../ui/step-up';
import { Disclosure } from '../shared/disclosure';
import { Checkbox, TextArea, TextField, splitList } from '../shared/fields';
import { DataTable, type Column } from '../shared/table';
import { ROLES } from '../users/roles';
import type { OidcProviderView } from '../views';

const KEY = ['oidc-providers'];

/** `group = role, role` lines, as the form shows a provider's group → roles mapping. */
export function mappingText(groupRoles: Record<string, string[]>): string {
  return Object.entries(groupRoles)
    .map(([group, roles]) => `${group} = ${roles.join(', ')}`)
    .join('\n');
}

/** Reads the mapping lines back; a line that is not `group = roles` or names an unknown role is an error. */
export function parseMapping(text: string): { groupRoles: Record<string, Role[]>; error?: string } {
  const groupRoles: Record<string, Role[]> = {};
  for (const [n, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.lastIndexOf('=');
    const group = line.slice(0, eq).trim();
    const roles = splitList(line.slice(eq + 1));
    if (eq <= 0 || !group || roles.length === 0) return { groupRoles, error: `line ${n + 1}: write it as "group = role, role"` };
    const unknown = roles.filter((r) => !ROLES.includes(r as Role));
    if (unknown.length) return { groupRoles, error: `line ${n + 1}: ${unknown.join(', ')} is not a role (${ROLES.join(', ')})` };
    groupRoles[group] = roles as Role[];
  }
  return { groupRoles };
}

/**
 * `/oidc-providers`: the single sign-on providers (admin). The client secret is write-only: the vault answers only
 * whether one is set, and an edit that leaves the field empty keeps it. Groups map to vault roles; someone whose
 * groups map to none is refused at sign-in.
 */
export function OidcProvidersPage() {
  const queries = useQueryClient();
  const [notice, setNotice] = useState('');
  const list = useQuery({ queryKey: KEY, queryFn: async () => ok(await api.GET('/v1/oidc-providers')) });
  const saved = async (what: string) => {
    setNotice(what);
    await queries.invalidateQueries({ queryKey: KEY });
  };
  const remove = async (name: string, code: string) => {
    await api.DELETE('/v1/oidc-providers/{name}', withMfa(code, { params: { path: { name } } }));
    await saved(`Provider ${name} removed.`);
  };
  const columns: Column<OidcProviderView & { id: string }>[] = [
    { label: 'Name', cell: (p) => p.name },
    { label: 'Shown as', cell: (p) => p.displayName },
    { label: 'Issuer', cell: (p) => <code>{p.issuer}</code> },
    { label: 'Status', cell: (p) => <StatusBadge status={p.enabled ? 'enabled' : 'disabled'} /> },
    { label: 'Client secret', cell: (p) => (p.clientSecretSet ? 'set' : 'none') },
    { label: 'Groups mapped', cell: (p) => Object.keys(p.groupRoles).length },
    { label: 'Redirect URI (register it at the provider)', cell: (p) => <code>{p.redirectUri}</code> },
    {
      label: 'Actions',
      cell: (p) => (
        <div className="stack">
          <Disclosure label={`Edit ${p.name}`}>{(close) => <ProviderForm existing={p} onSaved={async () => {
                close();
                await saved(`Provider ${p.name} saved.`);
              }} />}</Disclosure>
          <StepUpAction label={`Remove ${p.name}`} confirmLabel="Remove" danger onConfirm={(code) => remove(p.name, code)} />
        </div>
      ),
    },
  ];
  return (
    <Page title="Single sign-on providers">
      <Notice>{notice}</Notice>
      <Section title="Add a provider">
        <Disclosure label="Add a provider">{(close) => <ProviderForm onSaved={async (name) => {
              close();
              await saved(`Provider ${name} saved.`);
            }} />}</Disclosure>
      </Section>
      <Section title="Providers">
        <ErrorMessage error={list.error} />
        {list.isPending ? (
          <Loading what="Loading providers" />
        ) : (
          <DataTable caption="Single sign-on providers" rows={(list.data ?? []).map((p) => ({ ...p, id: p.name }))} columns={columns} empty="No single sign-on provider: everyone signs in with a password." />
        )}
      </Section>
    </Page>
  );
}

/** Creates a provider, or replaces one (`existing`): an empty secret field keeps the secret the vault holds. */
function ProviderForm({ existing, onSaved }: { existing?: OidcProviderView; onSaved(name: string): Promise<void> }) {
  const [name, setName] = useState(existing?.name ?? '');
  const [displayName, setDisplayName] = useState(existing?.displayName ?? '');
  const [issuer, setIssuer] = useState(existing?.issuer ?? '');
  const [clientId, setClientId] = useState(existing?.clientId ?? '');
  const [clientSecret, setClientSecret] = useState('');
  const [scopes, setScopes] = useState((existing?.scopes ?? ['openid', 'profile', 'email', 'groups']).join(' '));
  const [groupsClaim, setGroupsClaim] = useState(existing?.groupsClaim ?? 'groups');
  const [mapping, setMapping] = useState(mappingText(existing?.groupRoles ?? {}));
  const [enabled, setEnabled] = useState(existing?.enabled ?? true);
  const parsed = parseMapping(mapping);

  const save = async (code: string) => {
    const body = {
      displayName: displayName.trim(),
      issuer: issuer.trim(),
      clientId: clientId.trim(),
      ...(clientSecret ? { clientSecret } : {}),
      scopes: splitList(scopes),
      groupsClaim: groupsClaim.trim(),
      groupRoles: parsed.groupRoles,
      enabled,
    };
    const key = existing?.name ?? name.trim();
    ok(await api.PUT('/v1/oidc-providers/{name}', withMfa(code, { params: { path: { name: key } }, body })));
    setClientSecret('');
    await onSaved(key);
  };

  return (
    <div className="stack">
      {!existing && <TextField label="Name" value={name} onChange={setName} required pattern="[a-z0-9-]{1,40}" autoComplete="off" hint="Lower-case letters, digits and dashes: it appears in the sign-in address." />}
      <TextField label="Shown as" value={displayName} onChange={setDisplayName} required autoComplete="off" hint="The sign-in button reads “Sign in with …”." />
      <TextField label="Issuer URL" value={issuer} onChange={setIssuer} required type="url" autoComplete="off" hint="https (http only for a provider on this machine)." />
      <TextField label="Client id" value={clientId} onChange={setClientId} required autoComplete="off" />
      <TextField
        label="Client secret"
        value={clientSecret}
        onChange={setClientSecret}
        type="password"
        autoComplete="new-password"
        hint={existing?.clientSecretSet ? 'A secret is set: leave this empty to keep it.' : 'The vault keeps it encrypted and never shows it again.'}
      />
      <TextField label="Scopes" value={scopes} onChange={setScopes} autoComplete="off" hint="Separated by spaces; openid is always asked for." />
      <TextField label="Groups claim" value={groupsClaim} onChange={setGroupsClaim} autoComplete="off" hint="The ID token claim that lists the person’s groups." />
      <TextArea label="Groups and their vault roles" value={mapping} onChange={setMapping} hint={`One line per group: "group = role, role". Roles: ${ROLES.join(', ')}.`} />
      {parsed.error && <p className="error">{parsed.error}</p>}
      <Checkbox label="Enabled (shown on the sign-in page)" checked={enabled} onChange={setEnabled} />
      <StepUpAction label={existing ? `Save ${existing.name}` : 'Save provider'} onConfirm={save} disabled={!!parsed.error || !(existing?.name ?? name.trim()) || !issuer.trim() || !clientId.trim()} />
    </div>
  );
}
