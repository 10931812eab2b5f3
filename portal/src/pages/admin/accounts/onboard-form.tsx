import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, ok, withMfa } from '../../../api/client';
import type { AccountView } from '../../../api/views';
import { Notice } from '../../../ui/errors';
import { StepUpAction } from '../../../ui/step-up';
import { Checkbox, optionsOf, TextField } from '../shared/fields';
import { useTargets } from '../../../api/names';
import { DEFAULT_POLICY, draftOf, PolicyFields, policyOf } from './policy-fields';
import { SelectField } from '../../../ui/fields';

/**
 * Onboards (vaults) an account on a target. By default the vault sets a new password on the target itself, so nobody
 * knows it; a current password typed instead stays in this component's state and is sent once.
 */
export function OnboardForm({ targetId: fixedTarget, onDone }: { targetId?: string; onDone?(account: AccountView): void }) {
  const queries = useQueryClient();
  const targets = useTargets();
  const [targetId, setTargetId] = useState(fixedTarget ?? '');
  const [username, setUsername] = useState('');
  const [keepPassword, setKeepPassword] = useState(false);
  const [password, setPassword] = useState('');
  const [policy, setPolicy] = useState(draftOf(DEFAULT_POLICY));
  const [done, setDone] = useState<AccountView | null>(null);

  const onboard = async (code: string) => {
    const body = { targetId, username, ...(keepPassword ? { password } : {}), policy: policyOf(policy) };
    const account = ok(await api.POST('/v1/accounts', withMfa(code, { body }))) as AccountView;
    setPassword('');
    setUsername('');
    setDone(account);
    await queries.invalidateQueries();
    onDone?.(account);
  };

  return (
    <div className="stack">
      {done && <Notice>Account {done.username} onboarded ({done.status.replace(/_/g, ' ')}).</Notice>}
      {!fixedTarget && (
        <SelectField
          label="Target"
          value={targetId}
          onChange={setTargetId}
          options={optionsOf((targets.data ?? []).map((t) => ({ value: t.id, label: `${t.name} (${t.type}, ${t.host})` })), 'Choose a target')}
        />
      )}
      <TextField label="Account username" value={username} onChange={setUsername} required autoComplete="off" hint="The existing account on the target the vault takes over." />
      <Checkbox label="Keep its current password (type it below) instead of setting a new one" checked={keepPassword} onChange={setKeepPassword} />
      {keepPassword && <TextField label="Current password" value={password} onChange={setPassword} type="password" autoComplete="new-password" required />}
      <PolicyFields value={policy} onChange={setPolicy} />
      <StepUpAction label="Onboard account" onConfirm={onboard} disabled={!targetId || !username} />
    </div>
  );
}
