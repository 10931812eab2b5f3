import { useId, useState, type ReactNode } from 'react';
import { duration } from './format';

/** A labelled select. */
export function SelectField<V extends string | number>({
  label,
  value,
  onChange,
  options,
  required,
}: {
  label: string;
  value: V;
  onChange(v: NoInfer<V>): void;
  options: Array<{ value: NoInfer<V>; label: string }>;
  required?: boolean;
}) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select
        id={id}
        required={required}
        value={value}
        onChange={(e) => onChange((typeof value === 'number' ? Number(e.target.value) : e.target.value) as V)}
      >
        {options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    </div>
  );
}

/** A status filter over a list ('' = any). */
export function StatusFilter({ statuses, value, onChange }: { statuses: readonly string[]; value: string; onChange(v: string): void }) {
  const options = ['', ...statuses].map((s) => ({ value: s, label: s ? s.replace(/_/g, ' ') : 'any' }));
  return <SelectField label="Status" value={value} onChange={onChange} options={options} />;
}

/** A choice of lengths of time, in seconds, shown as `15 min`, `1 h`. */
export function DurationSelect({ label, value, onChange, options }: { label: string; value: number; onChange(v: number): void; options: number[] }) {
  return <SelectField label={label} value={value} onChange={onChange} options={options.map((s) => ({ value: s, label: duration(s) }))} />;
}

/** Common lengths up to `max` (and `max` itself, and `extra` when given), ascending. */
export function durationsUpTo(max: number, extra?: number): number[] {
  const common = [900, 1800, 3600, 7200, 14400, 28800, 86400].filter((s) => s <= max);
  return [...new Set([...common, max, ...(extra !== undefined ? [Math.min(extra, max)] : [])])].sort((a, b) => a - b);
}

/** The option closest to `wanted` from below (or the first), so a changed list never leaves the select on a missing value. */
export const nearest = (options: number[], wanted: number) => (options.includes(wanted) ? wanted : (options.filter((s) => s <= wanted).pop() ?? options[0]));

/** A description list of facts; rows that are false or null are left out. */
export function Facts({ rows }: { rows: Array<readonly [string, ReactNode] | false | null | undefined> }) {
  return (
    <dl className="facts">
      {rows
        .filter((r): r is readonly [string, ReactNode] => !!r)
        .map(([label, value]) => (
          <FactRow key={label} label={label} value={value} />
        ))}
    </dl>
  );
}

function FactRow({ label, value }: { label: string; value: ReactNode }) {
  return (
    <>
      <dt>{label}</dt>
      <dd>{value}</dd>
    </>
  );
}

/**
 * A form action's busy flag and error: `run(fn)` clears the error, marks busy, and keeps the error if fn throws
 * (returns whether it succeeded).
 */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = async (fn: () => Promise<unknown>): Promise<boolean> => {
    setBusy(true);
    setError(null);
    try {
      await fn();
      return true;
    } catch (e) {
      setError(e);
      return false;
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, run };
}
