import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useParams } from 'react-router';
import { api, ok, withMfa } from '../../../api/client';
import type { Role } from '../../../api/views';
import { ErrorMessage, Notice } from '../../../ui/errors';
import { Loading, Page, Section } from '../../../ui/page';
import { StepUpAction } from '../../../ui/step-up';
import { useMe } from '../../../session';
import { CheckboxGroup, TextField } from '../shared/fields';
import type { UpdateUserBody, UserView } from '../views';
import { ROLES } from './roles';
import { UserSecurityKeys } from './user-security-keys';
import { StatusBadge, When } from '../../../ui/format';
import { Facts } from '../../../ui/fields';

/** `/users/:id`: one user: roles, e-mail, disable or enable, authenticator reset (admin; every change with a code). */
export function UserPage() {
  const { id = '' } = useParams();
  const query = useQuery({
    queryKey: ['users', 'one', id],
    queryFn: async () => ok(await api.GET('/v1/users/{id}', { params: { path: { id } } })) as UserView,
  });
  // what the last change did: kept here, since the details below start again from each new answer
  const [notice, setNotice] = useState('');
  const user = query.data;
  if (!user) return <Page title="User">{query.error ? <ErrorMessage error={query.error} /> : <Loading what="Loading the user" />}</Page>;
  // the forms start from what the vault answered; after a change they start again from the new answer
  return <UserDetail key={JSON.stringify(user)} user={user} notice={notice} setNotice={setNotice} />;
}

function UserDetail({ user, notice, setNotice }: { user: UserView; notice: string; setNotice(n: string): void }) {
  const queries = useQueryClient();
  const me = useMe();
  const [roles, setRoles] = useState<Role[]>(user.roles);
  const [email, setEmail] = useState(user.email ?? '');
  const self = me.id === user.id;

  const patch = async (code: string, changes: { roles?: Role[]; disabled?: boolean; email?: string | null; passwordLogin?: boolean }, done: string) => {
    // `email: null` removes the address (the API takes it: users.dto.ts); the generated schema types it as a string only
    // for now (reported to part B), hence the cast
    const body = changes as UpdateUserBody;
    ok(await api.PATCH('/v1/users/{id}', withMfa(code, { params: { path: { id: user.id } }, body })));
    setNotice(done);
    await queries.invalidateQueries();
  };
  const resetMfa = async (code: string) => {
    await api.POST('/v1/users/{id}/mfa/reset', withMfa(code, { params: { path: { id: user.id } } }));
    setNotice(`${user.username} must enrol an authenticator again; their sessions have ended.`);
    await queries.invalidateQueries();
  };

  return (
    <Page title={`User ${user.username}`}>
      <Notice>{notice}</Notice>
      <Section title="Details">
        <Facts
          rows={[
            ['Status', <StatusBadge status={user.disabled ? 'disabled' : 'active'} />],
            ['Roles', user.roles.join(', ')],
            ['Authenticator', user.mfaEnrolled ? 'enrolled' : 'not enrolled (enrols at next sign-in)'],
            ['Signs in with', user.oidcProvider ? `single sign-on (${user.oidcProvider})` : 'a password'],
            ['Password sign-in', user.breakGlass ? 'always (break-glass administrator)' : user.passwordLogin ? 'allowed' : 'off'],
            ['E-mail', user.email ?? '—'],
            ['Muted notifications', user.mutedNotifications.join(', ') || 'none'],
            ['Created', <When at={user.createdAt} />],
          ]}
        />
        <p className="actions">
          <Link to={`/audit?actorId=${user.id}`}>What this user did</Link>
          <Link to={`/audit?subjectType=user&subjectId=${user.id}`}>Changes to this user</Link>
        </p>
      </Section>
      <Section title="Roles">
        {user.oidcProvider ? (
          // the vault refuses it (409 ROLES_FROM_IDP): the provider's groups decide, at every sign-in and re-check
          <p>
            Roles come from the identity provider <code>{user.oidcProvider}</code>: change the user's groups there (single sign-on page: groups → roles).
          </p>
        ) : (
          <>
            <CheckboxGroup legend="Roles held" options={ROLES} value={roles} onChange={setRoles} hint="A role taken away applies from the user's next request." />
            <StepUpAction label="Save roles" onConfirm={(code) => patch(code, { roles }, 'Roles saved.')} disabled={roles.length === 0} />
          </>
        )}
      </Section>
      <Section title="E-mail for notifications">
        <TextField label="E-mail address" value={email} onChange={setEmail} type="email" autoComplete="off" hint="Empty: no notifications are sent to this user." />
        <StepUpAction label="Save e-mail" onConfirm={(code) => patch(code, { email: email.trim() || null }, 'E-mail saved.')} />
      </Section>
      <Section title="Access">
        <div className="actions">
          {user.disabled ? (
            <StepUpAction label="Enable user" onConfirm={(code) => patch(code, { disabled: false }, 'User enabled.')} />
          ) : (
            <StepUpAction label="Disable user" danger disabled={self || user.breakGlass} onConfirm={(code) => patch(code, { disabled: true }, 'User disabled: their sessions have ended.')} />
          )}
          <StepUpAction label="Reset authenticator" danger onConfirm={resetMfa} />
          {!user.breakGlass &&
            (user.passwordLogin ? (
              <StepUpAction label="Turn password sign-in off" onConfirm={(code) => patch(code, { passwordLogin: false }, 'Password sign-in is off for this user.')} />
            ) : (
              <StepUpAction label="Allow password sign-in" onConfirm={(code) => patch(code, { passwordLogin: true }, 'Password sign-in is allowed for this user.')} />
            ))}
        </div>
        {self && <p className="hint">You cannot disable yourself here.</p>}
        {user.breakGlass && <p className="hint">The break-glass administrator stays enabled, an admin, and able to sign in with a password: the way back in when single sign-on fails.</p>}
        <p className="hint">Resetting the authenticator also removes every security key: the user enrols again at the next sign-in.</p>
      </Section>
      <UserSecurityKeys userId={user.id} onChanged={setNotice} />
    </Page>
  );
}
