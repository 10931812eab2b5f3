import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, ok, withMfa } from '../../../api/client';
import { MoreButton, usePagedList } from '../../../api/lists';
import type { Role } from '../../../api/views';
import { ErrorMessage } from '../../../ui/errors';
import { Loading, Page, Section } from '../../../ui/page';
import { StepUpAction } from '../../../ui/step-up';
import { Disclosure } from '../shared/disclosure';
import { CheckboxGroup, TextField } from '../shared/fields';
import { DataTable, type Column } from '../shared/table';
import type { UserView } from '../views';
import { ROLES } from './roles';
import { StatusBadge, When } from '../../../ui/format';

const COLUMNS: Column<UserView>[] = [
  { label: 'Username', cell: (u) => <Link to={`/users/${u.id}`}>{u.username}</Link> },
  { label: 'Roles', cell: (u) => u.roles.join(', ') },
  { label: 'Authenticator', cell: (u) => (u.mfaEnrolled ? 'enrolled' : 'not enrolled') },
  { label: 'Signs in with', cell: (u) => (u.oidcProvider ? `single sign-on (${u.oidcProvider})` : u.passwordLogin || u.breakGlass ? 'password' : 'none (password sign-in off)') },
  { label: 'Status', cell: (u) => <StatusBadge status={u.disabled ? 'disabled' : 'active'} /> },
  { label: 'E-mail', cell: (u) => u.email ?? '—' },
  { label: 'Created', cell: (u) => <When at={u.createdAt} /> },
];

/** `/users`: people and their roles (admin). */
export function UsersPage() {
  const list = usePagedList<UserView>('/v1/users', {});
  return (
    <Page title="Users">
      <Section title="Create a user">
        <Disclosure label="Create a user">{() => <UserCreateForm />}</Disclosure>
      </Section>
      <Section title="All users">
        <ErrorMessage error={list.error} />
        {list.isPending ? <Loading what="Loading users" /> : <DataTable caption="Users" rows={list.items} columns={COLUMNS} empty="No users." />}
        <MoreButton list={list} />
      </Section>
    </Page>
  );
}

/**
 * A new user with a first password the admin hands over out of band (held in this form's state only); they enrol
 * their authenticator at their first sign-in.
 */
function UserCreateForm() {
  const queries = useQueryClient();
  const navigate = useNavigate();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [roles, setRoles] = useState<Role[]>(['operator']);
  const create = async (code: string) => {
    const user = ok(await api.POST('/v1/users', withMfa(code, { body: { username, password, roles } }))) as UserView;
    setPassword('');
    await queries.invalidateQueries();
    navigate(`/users/${user.id}`);
  };
  return (
    <div className="stack">
      <TextField label="Username" value={username} onChange={setUsername} required autoComplete="off" hint="2-64 lowercase letters, digits, dots, dashes, underscores or @." />
      <TextField label="First password" value={password} onChange={setPassword} type="password" required autoComplete="new-password" hint="At least 12 characters; give it to the user out of band." />
      <CheckboxGroup legend="Roles" options={ROLES} value={roles} onChange={setRoles} />
      <StepUpAction label="Create user" onConfirm={create} disabled={!username || !password || roles.length === 0} />
    </div>
  );
}
