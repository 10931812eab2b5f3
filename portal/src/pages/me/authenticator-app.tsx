import { useState } from 'react';
import { api, ok, withMfa } from '../../api/client';
import type { SessionView } from '../../api/views';
import { useMe, useSession } from '../../session';
import { Notice } from '../../ui/errors';
import { Section } from '../../ui/page';
import { StepUpAction } from '../../ui/step-up';
import { TotpSetup, type TotpStart } from '../totp-setup';

/**
 * Someone with security keys only may add an authenticator app (a way in when no key is at hand): a step-up with a key
 * first (a stolen session must not add an authenticator), then the QR code and a first code. Confirming ends every
 * session of the user and this page carries on with the fresh one the vault answers.
 */
export function AuthenticatorApp() {
  const me = useMe();
  const { adopt } = useSession();
  const [started, setStarted] = useState<TotpStart | null>(null);
  const [notice, setNotice] = useState('');
  if (me.mfaMethods.includes('totp'))
    return (
      <Section title="Authenticator app">
        <p>Set up: sign-ins and sensitive actions accept its 6-digit code.</p>
        <Notice>{notice}</Notice>
      </Section>
    );

  const start = async (proof: string) => setStarted(ok(await api.POST('/v1/me/mfa/totp', withMfa(proof))));
  const confirmed = async (answer: unknown) => {
    setStarted(null);
    adopt(answer as SessionView);
    setNotice('Authenticator app added: your other sessions have ended.');
  };
  return (
    <Section title="Authenticator app">
      <p>You confirm with security keys only. An authenticator app gives you a second way in.</p>
      {started ? <TotpSetup start={async () => started} onConfirmed={confirmed} /> : <StepUpAction label="Set up an authenticator app" confirmLabel="Continue" onConfirm={start} />}
    </Section>
  );
}
