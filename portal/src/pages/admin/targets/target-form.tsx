import { useState } from 'react';
import { useNavigate } from 'react-router';
import { useQueryClient } from '@tanstack/react-query';
import { api, ok, withMfa } from '../../../api/client';
import { StepUpAction } from '../../../ui/step-up';
import { Checkbox, optionsOf, TextArea, TextField } from '../shared/fields';
import type { AdminTargetView, TargetOptions, TargetType } from '../views';
import { SelectField } from '../../../ui/fields';

const DEFAULT_PORT: Record<TargetType, string> = { ssh: '22', postgres: '5432', mysql: '3306' };
type TextOption = 'hostKeySha256' | 'database' | 'accountHost' | 'tlsCa' | 'tlsCertSha256';
const TYPES: Array<{ value: TargetType; label: string }> = [
  { value: 'ssh', label: 'SSH (Linux host)' },
  { value: 'postgres', label: 'PostgreSQL' },
  { value: 'mysql', label: 'MySQL / MariaDB' },
];

/**
 * Registers a target. Its admin password or key is typed here, held in this component's state only and sent once
 * (the vault stores it encrypted and never returns it); the state is dropped when the form closes.
 */
export function TargetCreateForm({ onDone }: { onDone(): void }) {
  const navigate = useNavigate();
  const queries = useQueryClient();
  const [type, setType] = useState<TargetType>('ssh');
  const [name, setName] = useState('');
  const [host, setHost] = useState('');
  const [port, setPort] = useState(DEFAULT_PORT.ssh);
  const [adminUser, setAdminUser] = useState('');
  const [useKey, setUseKey] = useState(false);
  const [password, setPassword] = useState('');
  const [privateKey, setPrivateKey] = useState('');
  const [passphrase, setPassphrase] = useState('');
  const [opts, setOpts] = useState<Record<TextOption, string>>({ hostKeySha256: '', database: '', accountHost: '', tlsCa: '', tlsCertSha256: '' });
  const [tls, setTls] = useState(false);
  const opt = (k: TextOption) => (v: string) => setOpts({ ...opts, [k]: v });

  const changeType = (t: TargetType | '') => {
    if (!t) return;
    if (port === DEFAULT_PORT[type]) setPort(DEFAULT_PORT[t]);
    setType(t);
    if (t !== 'ssh') setUseKey(false);
  };

  const options = (): TargetOptions => {
    const o: TargetOptions = {};
    const text = (k: TextOption) => {
      if (opts[k].trim()) o[k] = opts[k].trim();
    };
    if (type === 'ssh') text('hostKeySha256');
    else {
      text('database');
      text('tlsCa');
      text('tlsCertSha256');
      if (type === 'mysql') text('accountHost');
      if (type === 'postgres' && tls) o.tls = true;
    }
    if (o.hostKeySha256) o.hostKeySha256 = o.hostKeySha256.replace(/^SHA256:/, '');
    return o;
  };

  const create = async (code: string) => {
    const admin = useKey ? { username: adminUser, privateKey, ...(passphrase ? { passphrase } : {}) } : { username: adminUser, password };
    const body = { name, type, host, port: Number(port), admin, options: options() };
    const target = ok(await api.POST('/v1/targets', withMfa(code, { body }))) as AdminTargetView;
    setPassword('');
    setPrivateKey('');
    setPassphrase('');
    await queries.invalidateQueries();
    onDone();
    navigate(`/targets/${target.id}`, { state: { created: true } });
  };

  return (
    <div className="stack">
      <fieldset className="stack">
        <legend>Target</legend>
        <SelectField label="Type" value={type} onChange={changeType} options={optionsOf(TYPES)} />
        <TextField label="Target name" value={name} onChange={setName} required hint="Letters, digits, dots, dashes, underscores." autoComplete="off" />
        <div className="form-row">
          <TextField label="Host" value={host} onChange={setHost} required hint="DNS name or IP address." autoComplete="off" />
          <TextField label="Port" value={port} onChange={setPort} required inputMode="numeric" className="narrow" />
        </div>
      </fieldset>
      <fieldset className="stack">
        <legend>Administrator the vault logs in as</legend>
        <TextField label="Admin username" value={adminUser} onChange={setAdminUser} required autoComplete="off" />
        {type === 'ssh' && <Checkbox label="Log in with a private key" checked={useKey} onChange={setUseKey} />}
        {useKey ? (
          <>
            <TextArea label="Private key (OpenSSH PEM)" value={privateKey} onChange={setPrivateKey} required />
            <TextField label="Key passphrase" value={passphrase} onChange={setPassphrase} type="password" autoComplete="new-password" />
          </>
        ) : (
          <TextField label="Admin password" value={password} onChange={setPassword} type="password" autoComplete="new-password" required hint="Stored encrypted, never shown again." />
        )}
      </fieldset>
      <fieldset className="stack">
        <legend>How the vault checks it is the right server</legend>
        {type === 'ssh' ? (
          <TextField
            label="Host key (SHA256 fingerprint)"
            value={opts.hostKeySha256}
            onChange={opt('hostKeySha256')}
            autoComplete="off"
            hint="Optional: without it, the first verify shows the key the server presents for you to compare and pin."
          />
        ) : (
          <>
            <TextField label="Database" value={opts.database} onChange={opt('database')} autoComplete="off" hint="The database the admin connects to (optional)." />
            {type === 'mysql' && <TextField label="Account host pattern" value={opts.accountHost} onChange={opt('accountHost')} autoComplete="off" hint="Host part of managed accounts, e.g. % (default)." />}
            {type === 'postgres' && <Checkbox label="Require TLS with a verified certificate" checked={tls} onChange={setTls} />}
            <TextArea label="CA certificates (PEM, optional)" value={opts.tlsCa} onChange={opt('tlsCa')} />
            <TextField label="Server certificate SHA-256 pin (optional)" value={opts.tlsCertSha256} onChange={opt('tlsCertSha256')} autoComplete="off" />
          </>
        )}
      </fieldset>
      <StepUpAction label="Register target" onConfirm={create} />
    </div>
  );
}
