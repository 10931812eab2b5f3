import { SelectField } from '../../../ui/fields';
import { Checkbox, optionsOf, TextArea, TextField } from '../shared/fields';
import type { AdminTargetView, TargetOptions, TargetType } from '../views';

const DEFAULT_PORT: Record<TargetType, string> = { ssh: '22', postgres: '5432', mysql: '3306' };
const TYPES: Array<{ value: TargetType; label: string }> = [
  { value: 'ssh', label: 'SSH (Linux host)' },
  { value: 'postgres', label: 'PostgreSQL' },
  { value: 'mysql', label: 'MySQL / MariaDB' },
];
type TextOption = 'hostKeySha256' | 'database' | 'accountHost' | 'tlsCa' | 'tlsCertSha256';

/**
 * A target as typed in a form. The admin password, key and passphrase live only here, in the owning form's state, and
 * are sent once (the vault stores them encrypted and never returns them).
 */
export interface TargetDraft {
  type: TargetType;
  name: string;
  host: string;
  port: string;
  /** Editing: whether the admin credential is typed again (moving the target or changing its identity check needs it). */
  withAdmin: boolean;
  adminUser: string;
  useKey: boolean;
  password: string;
  privateKey: string;
  passphrase: string;
  opts: Record<TextOption, string>;
  tls: boolean;
}

export function targetDraft(t?: AdminTargetView): TargetDraft {
  const o = t?.options ?? {};
  return {
    type: t?.type ?? 'ssh',
    name: t?.name ?? '',
    host: t?.host ?? '',
    port: String(t?.port ?? DEFAULT_PORT.ssh),
    withAdmin: !t,
    adminUser: t?.admin.username ?? '',
    useKey: false,
    password: '',
    privateKey: '',
    passphrase: '',
    opts: { hostKeySha256: o.hostKeySha256 ?? '', database: o.database ?? '', accountHost: o.accountHost ?? '', tlsCa: o.tlsCa ?? '', tlsCertSha256: o.tlsCertSha256 ?? '' },
    tls: o.tls ?? false,
  };
}

/** The options the draft sets for its type (empty fields left out; a pasted `SHA256:` prefix dropped). */
export function targetOptions(d: TargetDraft): TargetOptions {
  const o: TargetOptions = {};
  const text = (k: TextOption) => {
    if (d.opts[k].trim()) o[k] = d.opts[k].trim();
  };
  if (d.type === 'ssh') text('hostKeySha256');
  else {
    text('database');
    text('tlsCa');
    text('tlsCertSha256');
    if (d.type === 'mysql') text('accountHost');
    if (d.type === 'postgres' && d.tls) o.tls = true;
  }
  if (o.hostKeySha256) o.hostKeySha256 = o.hostKeySha256.replace(/^SHA256:/, '');
  return o;
}

/** The admin credential of the draft, as the API takes it. */
export function targetAdmin(d: TargetDraft) {
  return d.useKey ? { username: d.adminUser, privateKey: d.privateKey, ...(d.passphrase ? { passphrase: d.passphrase } : {}) } : { username: d.adminUser, password: d.password };
}

/** The fields of a target; `editing` fixes the type and makes the admin credential optional. */
export function TargetFields({ draft: d, onChange, editing }: { draft: TargetDraft; onChange(d: TargetDraft): void; editing?: boolean }) {
  const set = <K extends keyof TargetDraft>(k: K) => (v: TargetDraft[K]) => onChange({ ...d, [k]: v });
  const opt = (k: TextOption) => (v: string) => onChange({ ...d, opts: { ...d.opts, [k]: v } });
  const changeType = (t: TargetType) => onChange({ ...d, type: t, port: d.port === DEFAULT_PORT[d.type] ? DEFAULT_PORT[t] : d.port, useKey: t === 'ssh' && d.useKey });
  return (
    <>
      <fieldset className="stack">
        <legend>Target</legend>
        {!editing && <SelectField label="Type" value={d.type} onChange={changeType} options={optionsOf(TYPES)} />}
        <TextField label="Target name" value={d.name} onChange={set('name')} required hint="Letters, digits, dots, dashes, underscores." autoComplete="off" />
        <div className="form-row">
          <TextField label="Host" value={d.host} onChange={set('host')} required hint="DNS name or IP address." autoComplete="off" />
          <TextField label="Port" value={d.port} onChange={set('port')} required inputMode="numeric" className="narrow" />
        </div>
      </fieldset>
      <fieldset className="stack">
        <legend>Administrator the vault logs in as</legend>
        {editing && (
          <Checkbox
            label="Enter the admin credential again"
            checked={d.withAdmin}
            onChange={set('withAdmin')}
            hint="Needed to move the target or change how its identity is checked: the stored one never goes to a new place."
          />
        )}
        {d.withAdmin && (
          <>
            <TextField label="Admin username" value={d.adminUser} onChange={set('adminUser')} required autoComplete="off" />
            {d.type === 'ssh' && <Checkbox label="Log in with a private key" checked={d.useKey} onChange={set('useKey')} />}
            {d.useKey ? (
              <>
                <TextArea label="Private key (OpenSSH PEM)" value={d.privateKey} onChange={set('privateKey')} required />
                <TextField label="Key passphrase" value={d.passphrase} onChange={set('passphrase')} type="password" autoComplete="new-password" />
              </>
            ) : (
              <TextField label="Admin password" value={d.password} onChange={set('password')} type="password" autoComplete="new-password" required hint="Stored encrypted, never shown again." />
            )}
          </>
        )}
      </fieldset>
      <fieldset className="stack">
        <legend>How the vault checks it is the right server</legend>
        {d.type === 'ssh' ? (
          <TextField
            label="Host key (SHA256 fingerprint)"
            value={d.opts.hostKeySha256}
            onChange={opt('hostKeySha256')}
            autoComplete="off"
            hint="Optional: without it, the first verify shows the key the server presents for you to compare and pin."
          />
        ) : (
          <>
            <TextField label="Database" value={d.opts.database} onChange={opt('database')} autoComplete="off" hint="The database the admin connects to (optional)." />
            {d.type === 'mysql' && <TextField label="Account host pattern" value={d.opts.accountHost} onChange={opt('accountHost')} autoComplete="off" hint="Host part of managed accounts, e.g. % (default)." />}
            {d.type === 'postgres' && <Checkbox label="Require TLS with a verified certificate" checked={d.tls} onChange={set('tls')} />}
            <TextArea label="CA certificates (PEM, optional)" value={d.opts.tlsCa} onChange={opt('tlsCa')} />
            <TextField label="Server certificate SHA-256 pin (optional)" value={d.opts.tlsCertSha256} onChange={opt('tlsCertSha256')} autoComplete="off" />
          </>
        )}
      </fieldset>
    </>
  );
}
