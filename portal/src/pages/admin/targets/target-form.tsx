import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useNavigate } from 'react-router';
import { api, ok, withMfa } from '../../../api/client';
import { StepUpAction } from '../../../ui/step-up';
import type { AdminTargetView, TargetOptions } from '../views';
import { TargetFields, targetAdmin, targetDraft, targetOptions } from './target-fields';

/** Registers a target; the admin credential stays in this form's state until it is sent, and goes with the form. */
export function TargetCreateForm({ onDone }: { onDone(): void }) {
  const navigate = useNavigate();
  const queries = useQueryClient();
  const [draft, setDraft] = useState(() => targetDraft());

  const create = async (code: string) => {
    const body = { name: draft.name, type: draft.type, host: draft.host, port: Number(draft.port), admin: targetAdmin(draft), options: targetOptions(draft) };
    const target = ok(await api.POST('/v1/targets', withMfa(code, { body }))) as AdminTargetView;
    setDraft(targetDraft());
    await queries.invalidateQueries();
    onDone();
    navigate(`/targets/${target.id}`, { state: { created: true } });
  };

  return (
    <div className="stack">
      <TargetFields draft={draft} onChange={setDraft} />
      <StepUpAction label="Register target" onConfirm={create} />
    </div>
  );
}

/**
 * Changes a target: only what was changed is sent. Moving it (host, port, admin, MySQL account host) or changing its
 * identity check (host key, TLS, CA, certificate pin) needs the admin credential again (400 ADMIN_CREDENTIAL_REQUIRED).
 */
export function TargetEditForm({ target, onDone }: { target: AdminTargetView; onDone(): void }) {
  const queries = useQueryClient();
  const [draft, setDraft] = useState(() => targetDraft(target));

  const save = async (code: string) => {
    const options = targetOptions(draft);
    const changedOptions = Object.fromEntries(
      Object.entries(options).filter(([k, v]) => target.options[k as keyof TargetOptions] !== v),
    ) as TargetOptions;
    const body = {
      ...(draft.name !== target.name ? { name: draft.name } : {}),
      ...(draft.host !== target.host ? { host: draft.host } : {}),
      ...(Number(draft.port) !== target.port ? { port: Number(draft.port) } : {}),
      ...(Object.keys(changedOptions).length ? { options: changedOptions } : {}),
      ...(draft.withAdmin ? { admin: targetAdmin(draft) } : {}),
    };
    ok(await api.PATCH('/v1/targets/{id}', withMfa(code, { params: { path: { id: target.id } }, body })));
    setDraft(targetDraft());
    await queries.invalidateQueries();
    onDone();
  };

  return (
    <div className="stack">
      <TargetFields draft={draft} onChange={setDraft} editing />
      <StepUpAction label="Save changes" onConfirm={save} />
    </div>
  );
}
