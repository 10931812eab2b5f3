import { useEffect, useId, useRef, type ReactNode } from 'react';
import { ErrorMessage } from './errors';

/**
 * One page: its single h1, the document title, and focus moved to the heading when the page opens, so a keyboard or
 * screen-reader user learns that the route changed (a client-side navigation announces nothing by itself).
 */
export function Page({ title, children, actions }: { title: string; children: ReactNode; actions?: ReactNode }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · PAM vault`;
    heading.current?.focus();
  }, [title]);
  return (
    <>
      <div className="page-head">
        <h1 ref={heading} tabIndex={-1}>
          {title}
        </h1>
        {actions && <div className="actions">{actions}</div>}
      </div>
      {children}
    </>
  );
}

/** A labelled region of a page (section + h2). */
export function Section({ title, children, className }: { title: string; children: ReactNode; className?: string }) {
  const id = useId();
  return (
    <section className={className ?? 'card'} aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

/** A page about one item read by `query`: loading, its error, or the item rendered by `children`. */
export function ItemPage<T>({ title, query, children }: { title: string; query: { data?: T; error: unknown; isPending: boolean }; children(item: T): ReactNode }) {
  return (
    <Page title={title}>
      {query.isPending && <Loading />}
      <ErrorMessage error={query.error} />
      {query.data !== undefined && children(query.data)}
    </Page>
  );
}

/** "Loading…" announced politely. */
export function Loading({ what = 'Loading' }: { what?: string }) {
  return (
    <p role="status" className="muted">
      {what}…
    </p>
  );
}
