import { useQuery, useQueryClient } from '@tanstack/react-query';
import { api, ok, withMfa } from '../../../api/client';
import { ErrorMessage } from '../../../ui/errors';
import { When } from '../../../ui/format';
import { Loading, Section } from '../../../ui/page';
import { StepUpAction } from '../../../ui/step-up';
import { DataTable } from '../shared/table';

/**
 * A user's security keys as an administrator sees them (recovery): a lost or suspected key is removed here; the
 * authenticator reset removes them all.
 */
export function UserSecurityKeys({ userId, onChanged }: { userId: string; onChanged(notice: string): void }) {
  const queries = useQueryClient();
  const keys = useQuery({ queryKey: ['users', 'webauthn', userId], queryFn: async () => ok(await api.GET('/v1/users/{id}/webauthn', { params: { path: { id: userId } } })) });
  const remove = async (credId: string, name: string, code: string) => {
    await api.DELETE('/v1/users/{id}/webauthn/{credentialId}', withMfa(code, { params: { path: { id: userId, credentialId: credId } } }));
    onChanged(`Security key “${name}” removed.`);
    await queries.invalidateQueries();
  };
  return (
    <Section title="Security keys">
      <ErrorMessage error={keys.error} />
      {keys.isPending ? (
        <Loading what="Loading security keys" />
      ) : (
        <DataTable
          caption="The user's security keys"
          rows={keys.data ?? []}
          empty="No security keys."
          columns={[
            { label: 'Name', cell: (k) => k.name },
            { label: 'Added', cell: (k) => <When at={k.createdAt} /> },
            { label: 'Last used', cell: (k) => (k.lastUsedAt ? <When at={k.lastUsedAt} /> : 'never') },
            { label: 'State', cell: (k) => (k.flagged ? <span className="badge bad">suspected copy: refused</span> : <span className="badge ok">in use</span>) },
            { label: 'Remove', cell: (k) => <StepUpAction label={`Remove ${k.name}`} confirmLabel="Remove" danger onConfirm={(code) => remove(k.id, k.name, code)} /> },
          ]}
        />
      )}
    </Section>
  );
}
