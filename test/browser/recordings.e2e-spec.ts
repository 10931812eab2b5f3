import type { Browser } from 'playwright-core';
import { RecordingService } from '../../src/gateway/recording/recording.service';
import { expectAccessible, freshCode, launchChromium, newPerson, PortalVault, screenshot, startPortalVault, watchPage } from '../support/browser';
import { gatewaySessions } from '../support/recorded-sessions';
import type { TestUser } from '../support/vault';
import { go, signIn, stepUp } from './portal-ui';

/**
 * Gateway sessions and their recordings in the portal, in real Chromium against the real vault: the auditor lists the
 * sessions (a live one badged), opens the player — asciinema-player, bundled, its WebAssembly allowed by the player
 * page's CSP only — and the recording replays; verify says it matches the audit chain. No CSP violation anywhere.
 * Operators see their own sessions and no player. The sessions are made the way the gateway makes them.
 */
describe('sessions and recordings in the portal (browser e2e)', () => {
  let vault: PortalVault;
  let browser: Browser;
  let auditor: TestUser;
  let operator: TestUser;
  let ended: string;
  let live: string;

  /** A session of `user` whose recording shows `output`, ended (sealed, audited) or still live. */
  async function session(user: TestUser, output: string[], end: boolean): Promise<string> {
    const sessions = gatewaySessions(vault, { account: 'deploy' });
    const id = await sessions.open(user);
    const rec = await vault.get(RecordingService).start({ sessionId: id, width: 80, height: 24, term: 'xterm-256color', recordInput: false, startedAt: new Date() }, { flushMs: 50 });
    rec.marker('shell');
    for (const o of output) rec.output(Buffer.from(o, 'utf8'));
    rec.marker('exec: uptime');
    if (!end) {
      await new Promise((r) => setTimeout(r, 150)); // flushed: a live recording is readable as far as it got
      return id;
    }
    await sessions.end(id, await rec.finish());
    return id;
  }

  beforeAll(async () => {
    [vault, browser] = await Promise.all([startPortalVault(), launchChromium()]);
    auditor = await vault.createUser(['auditor']);
    operator = await vault.createUser(['operator']);
    ended = await session(operator, ['$ echo hello\r\n', '\x1b[32mhello from the gateway\x1b[0m\r\n', '$ uptime\r\n', ' 12:00:00 up 1 day,  load average: 0.00\r\n'], true);
    live = await session(auditor, ['$ top\r\n'], false);
  });

  afterAll(async () => {
    await browser?.close();
    await vault?.close();
  });

  it('the auditor lists sessions (live badge), plays a recording in asciinema-player and verifies it, with no CSP violation', async () => {
    const page = await (await newPerson(browser, vault.origin)).newPage();
    const problems = watchPage(page);
    await signIn(page, auditor.username, auditor.password, await auditor.code());
    await go(page, 'Sessions');
    await page.getByRole('heading', { level: 1, name: 'Gateway sessions' }).waitFor();
    const table = page.getByRole('table', { name: 'Gateway sessions, newest first' });
    const liveRow = table.getByRole('row').filter({ hasText: 'you (' });
    await liveRow.getByText('live', { exact: true }).waitFor();
    const endedRow = table.getByRole('row').filter({ hasText: 'client closed' });
    await endedRow.waitFor();
    await expectAccessible(page, 'sessions list');
    await screenshot(page, 'sessions-list');
    // filters live in the address: live sessions only, then all again
    const filters = page.getByRole('form', { name: 'Filter the sessions' });
    await filters.getByLabel('State').selectOption('true');
    await filters.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL('**/portal/sessions?live=true');
    await endedRow.waitFor({ state: 'detached' });
    await liveRow.waitFor();
    expect(await table.getByRole('row').count()).toBe(2); // the header and the live one
    await filters.getByRole('button', { name: 'Clear' }).click();
    await endedRow.waitFor();

    await endedRow.getByRole('link', { name: 'Play' }).click();
    await page.waitForURL(`**/portal/sessions/${ended}/play`);
    await page.getByRole('heading', { level: 1, name: 'Session recording' }).waitFor();
    const player = page.getByTestId('recording-player');
    await player.locator('.ap-player').waitFor();
    await player.locator('.ap-play-button').click();
    await player.locator('.ap-term-text').filter({ hasText: 'hello from the gateway' }).waitFor();
    await page.getByText(/events, 2 markers/).waitFor();
    // the file's marker events (shell, exec: uptime) on the player's progress bar
    expect(await player.locator('.ap-marker-container').count()).toBeGreaterThanOrEqual(1); // (markers at the same instant share a place)

    await page.getByRole('button', { name: 'Verify the recording' }).click();
    await page.getByRole('status').getByText('The recording matches the hash in the audit chain.').waitFor();
    await expectAccessible(page, 'recording player');
    await screenshot(page, 'recording-player');

    // reading it was audited
    const reads = await vault.db.query<{ actor_id: string }>(`SELECT actor_id FROM audit_events WHERE type = 'session.recording_read' AND subject_id = $1`, [ended]);
    expect(reads.map((r) => r.actor_id)).toContain(auditor.id);
    // the relaxed policy is the player page's only: the list page is served with the strict one
    const csp = (path: string) => vault.http().get(path).then((r) => r.headers['content-security-policy'] as string);
    expect(await csp(`/portal/sessions/${ended}/play`)).toContain("script-src 'self' 'wasm-unsafe-eval';");
    expect(await csp('/portal/sessions')).toContain("script-src 'self';");
    expect(problems).toEqual({ errors: [], csp: [] });
  }, 90_000);

  it('a live recording plays as far as it got', async () => {
    const page = await (await newPerson(browser, vault.origin)).newPage();
    const problems = watchPage(page);
    await signIn(page, auditor.username, auditor.password, await auditor.code());
    await page.goto(`/portal/sessions/${live}/play`);
    await page.getByRole('heading', { level: 1, name: 'Session recording' }).waitFor();
    await page.getByText('live', { exact: true }).first().waitFor();
    const player = page.getByTestId('recording-player');
    await player.locator('.ap-play-button').click();
    await player.locator('.ap-term-text').filter({ hasText: '$ top' }).waitFor();
    expect(problems).toEqual({ errors: [], csp: [] });
  }, 60_000);

  it('an admin terminates a live session from the list (step-up): the gateway is asked to end it', async () => {
    const admin = await vault.admin();
    const page = await (await newPerson(browser, vault.origin)).newPage();
    const problems = watchPage(page);
    await signIn(page, admin.username, admin.password, await admin.code());
    await go(page, 'Sessions');
    const table = page.getByRole('table', { name: 'Gateway sessions, newest first' });
    const liveRow = table.getByRole('row').filter({ has: page.getByText('live', { exact: true }) });
    await liveRow.waitFor();
    expect(await table.getByRole('button', { name: 'Terminate' }).count()).toBe(1); // live sessions only
    await stepUp(liveRow, 'Terminate', freshCode(vault, admin.secret));
    await liveRow.getByText('ending…').waitFor();
    const [row] = await vault.db.query<{ end_requested_at: Date | null }>('SELECT end_requested_at FROM gateway_sessions WHERE id = $1', [live]);
    expect(row.end_requested_at).not.toBeNull();
    expect(await table.getByRole('button', { name: 'Terminate' }).count()).toBe(0);
    expect(problems).toEqual({ errors: [], csp: [] });
  }, 60_000);

  it('an operator sees their own sessions and no player', async () => {
    const page = await (await newPerson(browser, vault.origin)).newPage();
    const problems = watchPage(page);
    await signIn(page, operator.username, operator.password, await operator.code());
    await go(page, 'Sessions');
    const table = page.getByRole('table', { name: 'Gateway sessions, newest first' });
    await table.getByRole('row').filter({ hasText: 'client closed' }).waitFor();
    expect(await table.getByRole('row').count()).toBe(2); // the header and their one session
    expect(await table.getByRole('link', { name: 'Play' }).count()).toBe(0);
    expect(problems).toEqual({ errors: [], csp: [] });
  }, 60_000);
});
