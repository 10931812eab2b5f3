import { randomBytes } from 'node:crypto';

/** A recognisable secret, so a test can search every response and row for it. */
export const secretValue = (label = 'secret') => `${label}-${randomBytes(12).toString('hex')}`;

export function postgresTarget(overrides: Record<string, unknown> = {}) {
  return {
    name: `pg-${randomBytes(4).toString('hex')}`,
    type: 'postgres',
    host: '127.0.0.1',
    port: 5432,
    admin: { username: 'postgres', password: secretValue('target-admin') },
    ...overrides,
  };
}

export function sshTarget(overrides: Record<string, unknown> = {}) {
  return {
    name: `ssh-${randomBytes(4).toString('hex')}`,
    type: 'ssh',
    host: 'server1.example.internal',
    port: 22,
    admin: { username: 'root', password: secretValue('ssh-admin') },
    options: { sudo: false },
    ...overrides,
  };
}

export function accountInput(targetId: string, overrides: Record<string, unknown> = {}) {
  return {
    targetId,
    username: `app_${randomBytes(3).toString('hex')}`,
    password: secretValue('account'),
    ...overrides,
  };
}
