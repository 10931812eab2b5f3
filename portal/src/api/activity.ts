/**
 * Whether someone is using the page. Live views poll the vault every few seconds, and each request counts as activity
 * for the session's idle timeout (VAULT_PORTAL_IDLE_SECONDS): a visible tab left open on a live page would keep its
 * session alive for ever. So polling stops once nobody has touched the page for POLL_WHILE_IDLE_MS, and the session
 * can lapse; the first key, click or touch afterwards reads everything again (and meets the sign-in if it has ended).
 */
export const POLL_WHILE_IDLE_MS = 5 * 60_000;

let last = Date.now();
let resume: (() => void) | null = null;

function touched(): void {
  const wasIdle = isIdle();
  last = Date.now();
  if (wasIdle) resume?.();
}

for (const event of ['pointerdown', 'keydown', 'wheel', 'touchstart'] as const) window.addEventListener(event, touched, { passive: true, capture: true });

export function isIdle(): boolean {
  return Date.now() - last > POLL_WHILE_IDLE_MS;
}

/** What to do when someone comes back after being idle (the app reads its live queries again). */
export function onResume(callback: () => void): void {
  resume = callback;
}
