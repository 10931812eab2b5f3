import { useState, type ReactNode } from 'react';

/**
 * A form that stays folded away until asked for ("Onboard an account"): the button says whether it is open
 * (aria-expanded), and the form's state goes when it closes (a typed password with it).
 */
export function Disclosure({ label, children }: { label: string; children: (close: () => void) => ReactNode }) {
  const [open, setOpen] = useState(false);
  const close = () => setOpen(false);
  return (
    <div className="stack">
      <div className="actions">
        <button type="button" className={open ? undefined : 'primary'} aria-expanded={open} onClick={() => setOpen(!open)}>
          {open ? `Close: ${label.toLowerCase()}` : label}
        </button>
      </div>
      {open && children(close)}
    </div>
  );
}
