import { useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, ok, withMfa } from '../../../api/client';
import { useLiveItem } from '../../../api/lists';
import type { AccountView } from '../../../api/views';
import { ErrorMessage, Notice } from '../../../ui/errors';
import { Section } from '../../../ui/page';
import { StepUpAction } from '../../../ui/step-up';
import { DataTable, type Column } from '../shared/table';
import type { RotationView } from '../views';
import { draftOf, PolicyFields, policyOf } from './policy-fields';
import { StatusBadge, When } from '../../../ui/format';

const ROTATION_COLUMNS: Column<RotationView>[] = [
  { label: 'Started', cell: (r) => <When at={r.createdAt} /> },
  { label: 'Why', cell: (r) => r.reason.replace(/_/g, ' ') },
  { label: 'Status', cell: (r) => <StatusBadge status={r.status} /> },
  { label: 'Error', cell: (r) => (r.errorCode ? <code>{r.errorCode}</code> : '—') },
  { label: 'Finished', cell: (r) => <When at={r.finishedAt} /> },
];


/**
 * What an administrator does with one account: rotate now (runs in the background; the history shows how it went),
 * change its policy, delete it. Shown to admins on the account's page (part C's /accounts/:id).
 */
export function AccountAdminActions({ account }: { account: AccountView }) {
  const queries = useQueryClient();
  const navigate = useNavigate();
  const [rotateError, setRotateError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  // a pending rotation ends in the background: read again until it has
  const rotations = useLiveItem(
    ['accounts', account.id, 'rotations'],
    async () => (ok(await api.GET('/v1/accounts/{id}/rotations', { params: { path: { id: account.id } } })) as { items: RotationView[] }).items,
    (items) => items.some((r) => r.status === 'pending'),
  );

  const refresh = () => queries.invalidateQueries();
  // the account's own page does not poll: once no rotation is pending any more, its status is read again
  const pending = rotations.data?.some((r) => r.status === 'pending');
  useEffect(() => {
    if (pending === false && account.status === 'rotating') void queries.invalidateQueries({ queryKey: ['accounts', account.id] });
  }, [pending, account.status, account.id, queries]);

  const rotate = async () => {
    setRotateError(null);
    setNotice('');
    try {
      await api.POST('/v1/accounts/{id}/rotate', { params: { path: { id: account.id } } });
      setNotice('Rotation started: the new password is being set on the target.');
      await refresh();
    } catch (e) {
      setRotateError(e);
    }
  };

  const remove = async (code: string) => {
    await api.DELETE('/v1/accounts/{id}', withMfa(code, { params: { path: { id: account.id } } }));
    navigate('/accounts', { replace: true });
    await refresh();
  };

  return (
    <>
      <Section title="Administration">
        <Notice>{notice}</Notice>
        <div className="actions">
          <button type="button" onClick={() => void rotate()} disabled={account.status === 'rotating'}>
            Rotate password now
          </button>
        </div>
        <ErrorMessage error={rotateError} title="Rotation refused" />
        <p>
          <Link to={`/audit?subjectType=account&subjectId=${account.id}`}>Audit events of this account</Link>
        </p>
        {account.status === 'needs_attention' && (
          <p className="hint">This account needs attention: its rotations failed repeatedly (see the history for the error). Fix the cause on the target, then rotate it now.</p>
        )}
      </Section>
      <Section title="Rotation history">
        <ErrorMessage error={rotations.error} />
        <DataTable caption="Rotation history" rows={rotations.data ?? []} columns={ROTATION_COLUMNS} empty="No rotations yet." />
      </Section>
      <Section title="Policy">
        {/* the form starts again from each policy the vault answers */}
        <PolicyEditor key={JSON.stringify(account.policy)} account={account} onSaved={() => setNotice('Policy saved.')} />
      </Section>
      <Section title="Delete">
        <p className="hint">The account leaves the vault; it stays on the target with its current password.</p>
        <StepUpAction label="Delete account" danger onConfirm={remove} />
      </Section>
    </>
  );
}

function PolicyEditor({ account, onSaved }: { account: AccountView; onSaved(): void }) {
  const queries = useQueryClient();
  const [policy, setPolicy] = useState(() => draftOf(account.policy));
  const save = async (code: string) => {
    await api.PATCH('/v1/accounts/{id}', withMfa(code, { params: { path: { id: account.id } }, body: { policy: policyOf(policy) } }));
    onSaved();
    await queries.invalidateQueries();
  };
  return (
    <>
      <PolicyFields value={policy} onChange={setPolicy} />
      <div className="actions">
        <StepUpAction label="Save policy" onConfirm={save} />
      </div>
    </>
  );
}
