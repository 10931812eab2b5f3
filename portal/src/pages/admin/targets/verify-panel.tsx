import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, ok, withMfa } from '../../../api/client';
import { ApiError } from '../../../api/errors';
import { ErrorMessage } from '../../../ui/errors';
import { Section } from '../../../ui/page';
import { StepUpAction } from '../../../ui/step-up';
import { DataTable, type Column } from '../shared/table';
import type { AdminTargetView, Capability, VerifyView } from '../views';
import { StatusBadge } from '../../../ui/format';
import { Facts } from '../../../ui/fields';

/** The key an unpinned SSH server presents: in the error's extra field, or (older clients) quoted in its message. */
function presentedKey(e: ApiError): string | null {
  const details = (e as ApiError & { details?: Record<string, unknown> }).details;
  const fromDetails = details?.presentedHostKeySha256;
  if (typeof fromDetails === 'string') return fromDetails;
  return /SHA256:([A-Za-z0-9+/]+)/.exec(e.message)?.[1] ?? null;
}

/**
 * Verify: the vault logs in with the target's admin credential and reports each capability it needs. An SSH target
 * without a pinned host key is never logged in to: the first verify shows the key the server presents; the admin
 * compares it with the server itself and pins it with a second verify (a new code: each is accepted once).
 */
export function VerifyPanel({ target }: { target: AdminTargetView }) {
  const queries = useQueryClient();
  const [result, setResult] = useState<VerifyView | null>(null);
  const [presented, setPresented] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);

  const verify = async (code: string, hostKeySha256?: string) => {
    setError(null);
    try {
      const body = hostKeySha256 ? { hostKeySha256 } : {};
      setResult(ok(await api.POST('/v1/targets/{id}/verify', withMfa(code, { params: { path: { id: target.id } }, body }))) as VerifyView);
      setPresented(null);
      if (hostKeySha256) await queries.invalidateQueries();
    } catch (e) {
      if (!(e instanceof ApiError) || e.isMfa) throw e;
      setResult(null);
      if (e.code === 'TARGET_HOST_KEY_UNPINNED' && presentedKey(e)) return setPresented(presentedKey(e));
      setError(e);
    }
  };

  return (
    <Section title="Verify">
      <p className="hint">Logs in with the admin credential and checks every capability the vault needs. Changes nothing on the target.</p>
      <div className="actions">
        <StepUpAction label="Verify target" onConfirm={(code) => verify(code)} />
      </div>
      <ErrorMessage error={error} title="Verify failed" />
      {presented && (
        <div className="card warn-box stack" role="status">
          <p>
            <strong>No host key is pinned yet.</strong> The server presents:
          </p>
          <p>
            <code className="secret">SHA256:{presented}</code>
          </p>
          <p className="hint">
            Compare it with the server's own key before pinning (on the server: <code>ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub</code>). Pinning needs a
            new code from your authenticator.
          </p>
          <StepUpAction label="Pin this host key" onConfirm={(code) => verify(code, presented)} />
        </div>
      )}
      {result && <VerifyResult result={result} />}
    </Section>
  );
}

const CAPABILITY_COLUMNS: Column<Capability & { id: string }>[] = [
  { label: 'Capability', cell: (c) => <code>{c.code}</code> },
  { label: 'Status', cell: (c) => <StatusBadge status={c.ok ? 'success' : 'failed'} /> },
  { label: 'What was found', cell: (c) => c.message },
];

function VerifyResult({ result }: { result: VerifyView }) {
  return (
    <div className="stack" role="status">
      <p>
        {result.ok ? (
          <span className="badge ok">Verified: every capability is present</span>
        ) : (
          <span className="badge bad">Missing: {result.missing.join(', ')}</span>
        )}
      </p>
      <Facts
        rows={[
          !!result.serverVersion && ['Server version', result.serverVersion],
          !!result.privilege && ['Privilege', result.privilege],
          !!result.hostKeySha256 && ['Pinned host key', <code>SHA256:{result.hostKeySha256}</code>],
        ]}
      />
      <DataTable caption="Capabilities" rows={result.capabilities.map((c) => ({ ...c, id: c.code }))} columns={CAPABILITY_COLUMNS} empty="No capabilities reported." />
    </div>
  );
}
