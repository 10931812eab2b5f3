import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { INestApplication, Type } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import type { Actor, Role } from '../../src/common/actor';
import type { DemoTarget } from './targets';

/**
 * Seeds the demo vault as its bootstrap `admin`, through the vault's own services inside the demo process, with the
 * API's validation pipe on every input and the same audit events as the API writes. Why not over HTTP: every admin
 * change needs a fresh TOTP step-up code, and each 30-second step is accepted once, so the dozen changes below would
 * take six minutes of real time; the person who runs `npm run demo` holds the machine, which is what step-up proves.
 *
 * The services come from dist/ (the built vault, which `npm run demo` builds first), the same modules the running
 * application was made of, so Nest finds them by class.
 */

const DIST = join(__dirname, '../../dist/src');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const load = <T>(module: string): T => require(join(DIST, module)) as T;

/** A person the demo creates: not enrolled, so their first sign-in enrols TOTP with the QR code. */
export interface DemoUser {
  username: string;
  password: string;
  roles: Role[];
  does: string;
}

export const DEMO_PEOPLE: Array<Omit<DemoUser, 'password'>> = [
  { username: 'operator', roles: ['operator'], does: 'finds an account, requests a checkout, reveals, checks in; asks for one-time accounts for the vendor' },
  { username: 'approver', roles: ['approver'], does: 'approves or denies requests (try it at phone width)' },
  { username: 'vendor', roles: ['vendor'], does: 'claims and revokes the one-time accounts asked for them' },
  { username: 'auditor', roles: ['auditor'], does: 'audit log, chain verify, break-glass review' },
];

export interface SeedResult {
  users: DemoUser[];
  /** Per target: its id and what verify reported. */
  targets: Array<{ target: DemoTarget; id: string; verify: string }>;
}

export async function seedDemo(app: INestApplication, targets: DemoTarget[]): Promise<SeedResult> {
  const { createValidationPipe } = load<typeof import('../../src/common/validation')>('common/validation');
  const { UsersService } = load<typeof import('../../src/identity/users.service')>('identity/users.service');
  const { CreateUserDto } = load<typeof import('../../src/identity/users.dto')>('identity/users.dto');
  const { TargetsService } = load<typeof import('../../src/targets/targets.service')>('targets/targets.service');
  const { CreateTargetDto } = load<typeof import('../../src/targets/targets.dto')>('targets/targets.dto');
  const { AccountsService } = load<typeof import('../../src/account-admin/accounts.service')>('account-admin/accounts.service');
  const { CreateAccountDto } = load<typeof import('../../src/account-admin/accounts.dto')>('account-admin/accounts.dto');
  const { DataSource: DataSourceClass } = require('typeorm') as typeof import('typeorm'); // eslint-disable-line @typescript-eslint/no-require-imports

  const service = <T>(cls: Type<T>): T => app.get(cls, { strict: false });
  const pipe = createValidationPipe();
  /** The body as the API would have accepted it (validated, transformed to its DTO class), or the API's 400. */
  const valid = <T>(metatype: Type<T>, body: object): Promise<T> => pipe.transform(body, { type: 'body', metatype }) as Promise<T>;

  const ds = service<DataSource>(DataSourceClass);
  const [row] = (await ds.query("SELECT id FROM users WHERE username = 'admin'")) as Array<{ id: string }>;
  if (!row) throw new Error('the bootstrap admin does not exist');
  const admin: Actor = { id: row.id, kind: 'user', name: 'admin', roles: ['admin'], mfaEnrolled: true };

  const users: DemoUser[] = [];
  for (const person of DEMO_PEOPLE) {
    const user = { ...person, password: `${person.username}-${randomBytes(6).toString('hex')}` };
    await service(UsersService).create(admin, await valid(CreateUserDto, { username: user.username, password: user.password, roles: user.roles }));
    users.push(user);
  }

  const seeded: SeedResult['targets'] = [];
  for (const target of targets) {
    const created = await service(TargetsService).create(admin, await valid(CreateTargetDto, { name: target.name, ...target.real.body }));
    for (const a of target.accounts) {
      await service(AccountsService).create(admin, await valid(CreateAccountDto, { targetId: created.id, username: a.username, password: a.password, policy: a.policy }));
    }
    const v = await service(TargetsService).verify(admin, created.id, {});
    const verify = v.ok ? `verified: ${v.serverVersion ?? 'ok'}` : `verify reports missing: ${v.missing.join(', ')}`;
    seeded.push({ target, id: created.id, verify });
  }
  return { users, targets: seeded };
}
