import { useState, type FormEvent } from 'react';
import { useSearchParams } from 'react-router';

/**
 * A list's filters kept in the address (so a filtered list can be linked to): `applied` is what the list reads,
 * `draft` what the form shows until it is applied; empty values are left out of the address.
 */
export function useUrlFilters<K extends string>(keys: readonly K[]) {
  const [params, setParams] = useSearchParams();
  const applied = Object.fromEntries(keys.map((k) => [k, params.get(k) ?? ''])) as Record<K, string>;
  const [draft, setDraft] = useState<Record<K, string>>(applied);
  return {
    applied,
    draft,
    set: (k: K) => (v: string) => setDraft({ ...draft, [k]: v }),
    apply: (e: FormEvent) => {
      e.preventDefault();
      setParams(Object.fromEntries(Object.entries<string>(draft).filter(([, v]) => v.trim()).map(([k, v]) => [k, v.trim()])));
    },
    clear: () => {
      setDraft(Object.fromEntries(keys.map((k) => [k, ''])) as Record<K, string>);
      setParams({});
    },
  };
}

/** The Apply and Clear buttons of a filter form. */
export function FilterActions({ onClear }: { onClear(): void }) {
  return (
    <div className="actions">
      <button type="submit" className="primary">
        Apply filters
      </button>
      <button type="button" onClick={onClear}>
        Clear
      </button>
    </div>
  );
}
