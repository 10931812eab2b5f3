import { useSearchParams } from 'react-router';
import { ErrorMessage } from '../../../ui/errors';
import { Loading, Page, Section } from '../../../ui/page';
import { optionsOf } from '../shared/fields';
import { useTargets } from '../../../api/names';
import { EphemeralPolicyEditor } from './policy-editor';
import { SelectField } from '../../../ui/fields';

/**
 * `/policies`: the one-time account policy of each target (what vendors' accounts may be given, who must agree).
 * Accounts' own checkout policies are edited on each account (/admin/accounts/:id). The chosen target is in the
 * address (`?target=`), so a policy can be linked to.
 */
export function PoliciesPage() {
  const targets = useTargets();
  const [params, setParams] = useSearchParams();
  const chosen = params.get('target') ?? '';
  const target = targets.data?.find((t) => t.id === chosen);
  return (
    <Page title="One-time account policies">
      <p className="hint">Each target says what a vendor's one-time account on it may be given, how long it may live, and how many approvals it needs.</p>
      <ErrorMessage error={targets.error} />
      {targets.isPending ? (
        <Loading what="Loading targets" />
      ) : (
        <div className="filters">
          <SelectField
            label="Target"
            value={chosen}
            onChange={(id) => setParams(id ? { target: id } : {}, { replace: true })}
            options={optionsOf((targets.data ?? []).map((t) => ({ value: t.id, label: `${t.name} (${t.type})` })), 'Choose a target')}
          />
        </div>
      )}
      {target && (
        <Section title={`Policy of ${target.name}`}>
          <EphemeralPolicyEditor target={target} />
        </Section>
      )}
    </Page>
  );
}
