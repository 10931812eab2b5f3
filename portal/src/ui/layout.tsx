import { useState } from 'react';
import { NavLink, Outlet } from 'react-router';
import { extraNav } from '../pages/extra-routes';
import { useMe, useSession } from '../session';
import { CORE_NAV, visibleNav } from './nav';

/** The signed-in shell: skip link, header with the navigation for the user's roles, the page, and sign-out. */
export function Layout() {
  const me = useMe();
  const { signOut } = useSession();
  const [menuOpen, setMenuOpen] = useState(false);
  const items = visibleNav([...CORE_NAV, ...extraNav], me.roles);
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="shell-header">
        <div className="brand">PAM vault</div>
        <button type="button" className="menu-toggle" aria-expanded={menuOpen} aria-controls="main-nav" onClick={() => setMenuOpen(!menuOpen)}>
          Menu
        </button>
        <nav id="main-nav" aria-label="Main" className={menuOpen ? 'open' : undefined}>
          <ul>
            {items.map((i) => (
              <li key={i.to}>
                <NavLink to={i.to} end={i.to === '/'} onClick={() => setMenuOpen(false)}>
                  {i.label}
                </NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <NavLink to="/me">Me ({me.username})</NavLink>
          <button type="button" onClick={() => void signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Outlet />
      </main>
    </>
  );
}
