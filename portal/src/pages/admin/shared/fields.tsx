import { useId, type InputHTMLAttributes, type ReactNode } from 'react';

/** Fixed choices: bare values (shown with spaces for underscores) or values with their own labels. */
type Choices<V extends string> = readonly V[] | ReadonlyArray<{ value: V; label: string }>;

function labelled<V extends string>(choices: Choices<V>): Array<{ value: V; label: string }> {
  return choices.map((c) => (typeof c === 'string' ? { value: c, label: c.replace(/_/g, ' ') } : c));
}

/** The options of a select (ui/fields SelectField); with `any`, a first option '' for "no filter". */
export function optionsOf<V extends string>(choices: Choices<V>): Array<{ value: V; label: string }>;
export function optionsOf<V extends string>(choices: Choices<V>, any: string): Array<{ value: V | ''; label: string }>;
export function optionsOf<V extends string>(choices: Choices<V>, any?: string): Array<{ value: V | ''; label: string }> {
  return [...(any !== undefined ? [{ value: '' as const, label: any }] : []), ...labelled(choices)];
}

type InputProps = Omit<InputHTMLAttributes<HTMLInputElement>, 'value' | 'onChange' | 'id'>;

/** A labelled input with an optional hint read out with it. */
export function TextField({ label, value, onChange, hint, ...rest }: { label: string; value: string; onChange(v: string): void; hint?: ReactNode } & InputProps) {
  const id = useId();
  const hintId = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input id={id} value={value} onChange={(e) => onChange(e.target.value)} aria-describedby={hint ? hintId : undefined} {...rest} />
      {hint && (
        <p id={hintId} className="hint">
          {hint}
        </p>
      )}
    </div>
  );
}

/** A labelled multi-line input. */
export function TextArea({ label, value, onChange, hint, required }: { label: string; value: string; onChange(v: string): void; hint?: ReactNode; required?: boolean }) {
  const id = useId();
  const hintId = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <textarea id={id} value={value} required={required} onChange={(e) => onChange(e.target.value)} aria-describedby={hint ? hintId : undefined} />
      {hint && (
        <p id={hintId} className="hint">
          {hint}
        </p>
      )}
    </div>
  );
}

/** A checkbox with its label after it. */
export function Checkbox({ label, checked, onChange, hint }: { label: string; checked: boolean; onChange(v: boolean): void; hint?: string }) {
  const id = useId();
  return (
    <div className="field inline check">
      <input id={id} type="checkbox" checked={checked} onChange={(e) => onChange(e.target.checked)} />
      <label htmlFor={id}>{label}</label>
      {hint && <span className="hint">{hint}</span>}
    </div>
  );
}

/** Several checkboxes under one legend (roles, character classes, targets): the chosen values, in the order offered. */
export function CheckboxGroup<V extends string>({ legend, options, value, onChange, hint }: { legend: string; options: Choices<V>; value: NoInfer<V>[]; onChange(v: NoInfer<V>[]): void; hint?: string }) {
  const all = labelled(options);
  return (
    <fieldset className="checks">
      <legend>{legend}</legend>
      {all.map((o) => (
        <Checkbox key={o.value} label={o.label} checked={value.includes(o.value)} onChange={(on) => onChange(all.map((x) => x.value).filter((x) => (x === o.value ? on : value.includes(x))))} />
      ))}
      {hint && <p className="hint">{hint}</p>}
    </fieldset>
  );
}

/** A comma- or line-separated list typed into one field ("wheel, adm") as the API's array. */
export function splitList(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}
