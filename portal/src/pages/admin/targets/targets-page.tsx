import { useState } from 'react';
import { Link } from 'react-router';
import { MoreButton, usePagedList } from '../../../api/lists';
import { ErrorMessage } from '../../../ui/errors';
import { Loading, Page, Section } from '../../../ui/page';
import { Disclosure } from '../shared/disclosure';
import { optionsOf } from '../shared/fields';
import { DataTable, type Column } from '../shared/table';
import type { AdminTargetView, TargetType } from '../views';
import { TargetCreateForm } from './target-form';
import { When } from '../../../ui/format';
import { SelectField } from '../../../ui/fields';

const COLUMNS: Column<AdminTargetView>[] = [
  { label: 'Name', cell: (t) => <Link to={`/targets/${t.id}`}>{t.name}</Link> },
  { label: 'Type', cell: (t) => t.type },
  { label: 'Address', cell: (t) => <code>{`${t.host}:${t.port}`}</code> },
  { label: 'Admin', cell: (t) => t.admin.username },
  { label: 'Identity check', cell: (t) => identityCheck(t) },
  { label: 'Registered', cell: (t) => <When at={t.createdAt} /> },
];

/** How the vault knows it talks to the right server: a pinned host key, TLS, or (not yet) nothing. */
export function identityCheck(t: AdminTargetView): string {
  if (t.type === 'ssh') return t.options.hostKeySha256 ? 'host key pinned' : 'host key not pinned';
  if (t.options.tlsCertSha256) return 'certificate pinned';
  if (t.type === 'mysql' || t.options.tls) return t.options.tlsCa ? 'TLS, own CA' : 'TLS';
  return 'no TLS';
}

/** `/targets`: the systems the vault manages (admin). */
export function TargetsPage() {
  const [type, setType] = useState<TargetType | ''>('');
  const list = usePagedList<AdminTargetView>('/v1/targets', { type });
  return (
    <Page title="Targets">
      <Section title="Register a target">
        <Disclosure label="Register a target">{(close) => <TargetCreateForm onDone={close} />}</Disclosure>
      </Section>
      <Section title="Registered targets">
        <div className="filters">
          <SelectField label="Type" value={type} onChange={setType} options={optionsOf(['ssh', 'postgres', 'mysql'] as const, 'All types')} />
        </div>
        <ErrorMessage error={list.error} />
        {list.isPending ? <Loading what="Loading targets" /> : <DataTable caption="Targets" rows={list.items} columns={COLUMNS} empty="No targets registered yet." />}
        <MoreButton list={list} />
      </Section>
    </Page>
  );
}
