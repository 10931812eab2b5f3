import { useMe } from '../session';
import { Page } from '../ui/page';

export function HomePage() {
  const me = useMe();
  return (
    <Page title="Home">
      <p>Signed in as {me.username}.</p>
    </Page>
  );
}
