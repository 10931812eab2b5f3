import type { ReactNode } from 'react';

/** One column of a table: its header and what a row shows in it (the header doubles as the cell's label at phone width). */
export interface Column<T> {
  label: string;
  cell(row: T): ReactNode;
}

/**
 * A table with a caption and header cells (screen readers announce both); at narrow widths the stylesheet stacks
 * each row as a card and prints every cell's `data-label` before it.
 */
export function DataTable<T extends { id: string }>({ caption, rows, columns, empty }: { caption: string; rows: T[]; columns: Column<T>[]; empty: string }) {
  if (rows.length === 0) return <p className="muted">{empty}</p>;
  return (
    <div className="table-wrap">
      <table>
        <caption className="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c.label} scope="col">
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.id}>
              {columns.map((c) => (
                <td key={c.label} data-label={c.label}>
                  {c.cell(r)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
