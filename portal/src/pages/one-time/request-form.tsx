import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useId, useState, type FormEvent } from 'react';
import { useNavigate } from 'react-router';
import { api, ok } from '../../api/client';
import { useTargets } from '../../api/names';
import type { EphemeralAccess } from '../../api/views';
import { useMe } from '../../session';
import { ErrorMessage } from '../../ui/errors';
import { DurationSelect, durationsUpTo, nearest, SelectField, useAction } from '../../ui/fields';
import { Section } from '../../ui/page';
import { oneTimeCalls, useEphemeralPolicy, type EphemeralPolicy } from './one-time-api';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Admins pick the vendor from the users with role vendor; others (who cannot list users) enter the vendor's user id. */
function useVendors() {
  const me = useMe();
  return useQuery({
    queryKey: ['users', 'vendors'],
    enabled: me.has('admin'),
    queryFn: async () =>
      ok(await api.GET('/v1/users', { params: { query: { limit: 200 } } })).items.filter(
        (u) => u.roles.includes('vendor') && !u.disabled,
      ),
  });
}

/** An operator asks for a one-time account on a target for a vendor, with access chosen from the target's allow-list. */
export function RequestOneTime() {
  const navigate = useNavigate();
  const queries = useQueryClient();
  const { data: targets = [] } = useTargets();
  const vendors = useVendors();
  const [targetId, setTargetId] = useState('');
  const [vendorUserId, setVendor] = useState('');
  const [ttl, setTtl] = useState(3600);
  const [justification, setJustification] = useState('');
  const [access, setAccess] = useState<EphemeralAccess>({});
  const { busy, error, run } = useAction();
  const policy = useEphemeralPolicy(targetId);
  const ids = { vendor: useId(), why: useId() };
  const target = targets.find((t) => t.id === targetId);
  const options = durationsUpTo(policy.data?.maxTtlSeconds ?? 28800);
  const chosenTtl = nearest(options, ttl);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const clean = Object.fromEntries(Object.entries(access).filter(([, v]) => (Array.isArray(v) ? v.length > 0 : !!v))) as EphemeralAccess;
      const created = await oneTimeCalls.request({ targetId, vendorUserId: vendorUserId.trim(), ttlSeconds: chosenTtl, justification: justification.trim(), access: clean });
      await queries.invalidateQueries({ queryKey: ['/v1/ephemeral-accounts'] });
      navigate(`/one-time-accounts/${created.id}`);
    });
  };

  return (
    <Section title="Request a one-time account for a vendor">
      <form className="stack" onSubmit={submit} aria-label="Request a one-time account">
        <SelectField
          label="Target"
          required
          value={targetId}
          onChange={(v) => {
            setTargetId(v);
            setAccess({});
          }}
          options={[{ value: '', label: 'Choose a target' }, ...targets.map((t) => ({ value: t.id, label: `${t.name} (${t.type})` }))]}
        />
        {vendors.data ? (
          <SelectField
            label="Vendor"
            required
            value={vendorUserId}
            onChange={setVendor}
            options={[{ value: '', label: 'Choose a vendor' }, ...vendors.data.map((u) => ({ value: u.id, label: u.username }))]}
          />
        ) : (
          <div className="field">
            <label htmlFor={ids.vendor}>Vendor's user id</label>
            <input id={ids.vendor} required pattern={UUID.source} value={vendorUserId} onChange={(e) => setVendor(e.target.value)} aria-describedby={`${ids.vendor}-hint`} />
            <p id={`${ids.vendor}-hint`} className="hint">
              Operators cannot list users: ask an admin for the vendor's id.
            </p>
          </div>
        )}
        <DurationSelect label="Lifetime from the claim" value={chosenTtl} onChange={setTtl} options={options} />
        {target && policy.data && <AccessFields type={target.type} policy={policy.data} value={access} onChange={setAccess} />}
        <ErrorMessage error={policy.error} title="The target's policy" />
        <div className="field">
          <label htmlFor={ids.why}>Why does the vendor need it?</label>
          <textarea id={ids.why} required minLength={3} maxLength={1000} value={justification} onChange={(e) => setJustification(e.target.value)} />
        </div>
        {policy.data && (
          <p className="muted">
            Needs {policy.data.approvalsRequired} approval{policy.data.approvalsRequired === 1 ? '' : 's'}; the vendor then claims it once.
          </p>
        )}
        <ErrorMessage error={error} />
        <button type="submit" className="primary" disabled={busy || !targetId}>
          {busy ? 'Requesting…' : 'Request one-time account'}
        </button>
      </form>
    </Section>
  );
}

/** The access a one-time account may get on this target: only what the target's policy allows, as checkboxes. */
function AccessFields({ type, policy, value, onChange }: { type: string; policy: EphemeralPolicy; value: EphemeralAccess; onChange(v: EphemeralAccess): void }) {
  const dbId = useId();
  const toggle = <T,>(list: T[] | undefined, item: T, on: boolean) => (on ? [...(list ?? []), item] : (list ?? []).filter((x) => x !== item));
  if (type === 'ssh')
    return (
      <Choices legend="Groups (login only if none)" items={policy.allowedGroups} label={(g) => g} checked={(g) => !!value.groups?.includes(g)} onToggle={(g, on) => onChange({ ...value, groups: toggle(value.groups, g, on) })} />
    );
  if (type === 'postgres')
    return (
      <>
        <div className="field">
          <label htmlFor={dbId}>Database</label>
          <select id={dbId} value={value.database ?? ''} onChange={(e) => onChange({ ...value, database: e.target.value || undefined })}>
            <option value="">none (login only)</option>
            {policy.allowedDatabases.map((d) => (
              <option key={d} value={d}>
                {d}
              </option>
            ))}
          </select>
        </div>
        <Choices legend="Roles" items={policy.allowedRoles} label={(r) => r} checked={(r) => !!value.grantRoles?.includes(r)} onToggle={(r, on) => onChange({ ...value, grantRoles: toggle(value.grantRoles, r, on) })} />
      </>
    );
  if (type === 'mysql')
    return (
      <Choices
        legend="Grants"
        items={policy.allowedGrants}
        label={(g) => `${g.privileges.join(', ')} on ${g.on}`}
        checked={(g) => !!value.grants?.includes(g)}
        onToggle={(g, on) => onChange({ ...value, grants: toggle(value.grants, g, on) })}
      />
    );
  return null;
}

function Choices<T>({ legend, items, label, checked, onToggle }: { legend: string; items: T[]; label(i: T): string; checked(i: T): boolean; onToggle(i: T, on: boolean): void }) {
  const base = useId();
  return (
    <fieldset>
      <legend>{legend}</legend>
      {items.length === 0 && <p className="muted">The target's policy allows none: login only.</p>}
      {items.map((item, n) => (
        <div key={label(item)} className="field inline">
          <input id={`${base}-${n}`} type="checkbox" checked={checked(item)} onChange={(e) => onToggle(item, e.target.checked)} />
          <label htmlFor={`${base}-${n}`}>{label(item)}</label>
        </div>
      ))}
    </fieldset>
  );
}
