/**
 * Whether someone is using the page. Live views poll the vault every few seconds; a poll must not keep the session
 * alive (VAULT_PORTAL_IDLE_SECONDS), or a tab left open would never idle out. So a read made while nobody has touched
 * the page for ACTIVE_MS goes as `X-Session-Activity: passive` (the vault does not count it: src/identity/guards.ts),
 * and polling stops altogether after POLL_WHILE_IDLE_MS without a touch; the first key, click or touch afterwards reads
 * everything again (and meets the sign-in if the session has ended meanwhile).
 */
export const POLL_WHILE_IDLE_MS = 5 * 60_000;
/** A read within this long after a key, click, touch or scroll is the person's own (navigation, a filter, a reload). */
export const ACTIVE_MS = 10_000;

let last = Date.now();
let resume: (() => void) | null = null;

function touched(): void {
  const wasIdle = isIdle();
  last = Date.now();
  if (wasIdle) resume?.();
}

for (const event of ['pointerdown', 'keydown', 'wheel', 'touchstart'] as const) window.addEventListener(event, touched, { passive: true, capture: true });

/** Someone touched the page within ACTIVE_MS: what the page reads now counts as their activity. */
export function isActive(): boolean {
  return Date.now() - last <= ACTIVE_MS;
}

export function isIdle(): boolean {
  return Date.now() - last > POLL_WHILE_IDLE_MS;
}

/** What to do when someone comes back after being idle (the app reads its live queries again). */
export function onResume(callback: () => void): void {
  resume = callback;
}
