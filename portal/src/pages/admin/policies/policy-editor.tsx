import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, ok, withMfa } from '../../../api/client';
import { ErrorMessage, Notice } from '../../../ui/errors';
import { Loading } from '../../../ui/page';
import { StepUpAction } from '../../../ui/step-up';
import { Checkbox, splitList, TextArea, TextField } from '../shared/fields';
import type { TargetView } from '../../../api/views';
import { useEphemeralPolicy, type EphemeralPolicy } from '../../one-time/one-time-api';
import { duration } from '../../../ui/format';

/** A MySQL grant as one line: `SELECT, INSERT on shop.*`. */
const GRANT_LINE = /^\s*(.+?)\s+on\s+(\S+)\s*$/i;

function grantsText(grants: EphemeralPolicy['allowedGrants']): string {
  return grants.map((g) => `${g.privileges.join(', ')} on ${g.on}`).join('\n');
}

/** Lines that are not `PRIVS on db.table` are passed on as they are, so the vault's validation names them. */
function grantsOf(text: string): EphemeralPolicy['allowedGrants'] {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const m = GRANT_LINE.exec(l);
      return m ? { privileges: m[1].split(',').map((p) => p.trim().toUpperCase()).filter(Boolean), on: m[2] } : { privileges: [l.trim()], on: '' };
    });
}

/**
 * A target's one-time account policy: approvals, the longest lifetime, and the allow-list of what a vendor's account
 * may be given (SSH groups; PostgreSQL databases and roles; MySQL grants). The vault checks the list against the
 * target's own catalog when it is saved (400 POLICY_NOT_ALLOWED names what it refused).
 */
export function EphemeralPolicyEditor({ target }: { target: TargetView }) {
  const query = useEphemeralPolicy(target.id);
  // kept here: the form below starts again from each new answer
  const [saved, setSaved] = useState(false);
  if (!query.data) return query.error ? <ErrorMessage error={query.error} /> : <Loading what="Loading the policy" />;
  return <PolicyForm key={JSON.stringify(query.data)} target={target} policy={query.data} saved={saved} setSaved={setSaved} />;
}

function PolicyForm({ target, policy, saved, setSaved }: { target: TargetView; policy: EphemeralPolicy; saved: boolean; setSaved(s: boolean): void }) {
  const queries = useQueryClient();
  const [approvals, setApprovals] = useState(String(policy.approvalsRequired));
  const [maxHours, setMaxHours] = useState(String(policy.maxTtlSeconds / 3600));
  const [groups, setGroups] = useState(policy.allowedGroups.join(', '));
  const [databases, setDatabases] = useState(policy.allowedDatabases.join(', '));
  const [roles, setRoles] = useState(policy.allowedRoles.join(', '));
  const [grants, setGrants] = useState(grantsText(policy.allowedGrants));
  const [brokeredOnly, setBrokeredOnly] = useState(policy.brokeredOnly);
  const [allowPortForwarding, setAllowPortForwarding] = useState(policy.allowPortForwarding);
  const [recordInput, setRecordInput] = useState(policy.recordInput);

  const save = async (code: string) => {
    setSaved(false);
    const body: EphemeralPolicy = {
      approvalsRequired: Number(approvals),
      maxTtlSeconds: Math.round(Number(maxHours) * 3600),
      allowedGroups: target.type === 'ssh' ? splitList(groups) : [],
      allowedDatabases: target.type === 'postgres' ? splitList(databases) : [],
      allowedRoles: target.type === 'postgres' ? splitList(roles) : [],
      allowedGrants: target.type === 'mysql' ? grantsOf(grants) : [],
      brokeredOnly: target.type === 'ssh' && brokeredOnly,
      allowPortForwarding: target.type === 'ssh' && allowPortForwarding,
      recordInput: target.type === 'ssh' && recordInput,
    };
    ok(await api.PUT('/v1/targets/{id}/ephemeral-policy', withMfa(code, { params: { path: { id: target.id } }, body })));
    setSaved(true);
    await queries.invalidateQueries();
  };

  return (
    <div className="stack">
      <p className="hint">
        Now: {policy.approvalsRequired} approval{policy.approvalsRequired === 1 ? '' : 's'}, at most {duration(policy.maxTtlSeconds)} from the claim.
      </p>
      <div className="form-row">
        <TextField label="Approvals required" value={approvals} onChange={setApprovals} inputMode="numeric" />
        <TextField label="Longest lifetime (hours)" value={maxHours} onChange={setMaxHours} inputMode="decimal" />
      </div>
      {target.type === 'ssh' && <TextField label="Groups that may be given" value={groups} onChange={setGroups} autoComplete="off" hint="Comma-separated; empty: login only." />}
      {target.type === 'ssh' && (
        <>
          <Checkbox label="Brokered only: the claim shows no password, the vendor connects through the SSH gateway" checked={brokeredOnly} onChange={setBrokeredOnly} />
          <Checkbox label="Gateway sessions may forward local ports (ssh -L)" checked={allowPortForwarding} onChange={setAllowPortForwarding} />
          <Checkbox label="Gateway recordings keep what the vendor types too" checked={recordInput} onChange={setRecordInput} />
        </>
      )}
      {target.type === 'postgres' && (
        <>
          <TextField label="Databases CONNECT may be granted on" value={databases} onChange={setDatabases} autoComplete="off" hint="Comma-separated." />
          <TextField label="Roles that may be granted" value={roles} onChange={setRoles} autoComplete="off" hint="Comma-separated; never pg_* or postgres." />
        </>
      )}
      {target.type === 'mysql' && <TextArea label="Grants that may be given" value={grants} onChange={setGrants} hint="One per line, e.g. SELECT, INSERT on shop.*" />}
      {saved && <Notice>Policy saved.</Notice>}
      <StepUpAction label="Save one-time account policy" onConfirm={save} />
    </div>
  );
}
