import { useEffect, useState } from 'react';

/** A length of time for people: `45 s`, `15 min`, `1 h 30 min`, `3 d 2 h`. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return h ? `${d} d ${h} h` : `${d} d`;
  if (h) return m ? `${h} h ${m} min` : `${h} h`;
  const rest = s % 60;
  return rest && m < 10 ? `${m} min ${rest} s` : `${m} min`;
}

/** A date and time in the reader's locale, in a <time> element. */
export function When({ at }: { at: string | null | undefined }) {
  if (!at) return <span className="muted">—</span>;
  return <time dateTime={at}>{new Date(at).toLocaleString()}</time>;
}

/** The current time, re-read every `ms` (for countdowns); stops with the component. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(t);
  }, [ms]);
  return now;
}

/** Time left until `until`, ticking each second ("ended" once past). */
export function Remaining({ until, label = 'left' }: { until: string | null; label?: string }) {
  const now = useNow();
  if (!until) return <span className="muted">—</span>;
  const left = (new Date(until).getTime() - now) / 1000;
  return <time dateTime={until}>{left > 0 ? `${duration(left)} ${label}` : 'ended'}</time>;
}

const TONE: Record<string, 'ok' | 'warn' | 'bad' | 'muted'> = {
  active: 'ok',
  approved: 'ok',
  available: 'ok',
  sent: 'ok',
  success: 'ok',
  succeeded: 'ok',
  enabled: 'ok',
  pending: 'warn',
  checked_out: 'warn',
  pending_approval: 'warn',
  creating: 'warn',
  revoking: 'warn',
  rotating: 'warn',
  needs_attention: 'bad',
  failed: 'bad',
  failure: 'bad',
  disabled: 'muted',
  muted: 'muted',
  no_address: 'muted',
  denied: 'bad',
  revoked: 'bad',
  expired: 'muted',
  returned: 'muted',
};

/** A status as words (`pending approval`) with a colour that never carries the meaning alone. */
export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge ${TONE[status] ?? 'muted'}`}>{status.replace(/_/g, ' ')}</span>;
}

/** The first characters of an id, for when no name can be read. */
export const shortId = (id: string) => id.slice(0, 8);
