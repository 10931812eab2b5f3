import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { createBrowserRouter, Navigate, Outlet, RouterProvider, useLocation, type RouteObject } from 'react-router';
import { onResume } from './api/activity';
import { ApiError } from './api/errors';
import { extraRoutes } from './pages/extra-routes';
import { corePages } from './pages/routes';
import { EnrolPage } from './pages/enrol';
import { SignInPage } from './pages/sign-in';
import { NotFoundPage } from './pages/not-found';
import { SessionProvider, useSession } from './session';
import { Layout } from './ui/layout';
import { Loading } from './ui/page';

const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      // an error the vault answered on purpose (403, 404, 409…) will not change by asking again
      retry: (count, error) => count < 2 && !(error instanceof ApiError && error.status > 0 && error.status < 500),
      refetchOnWindowFocus: true,
      // nothing is cached beyond the page's life; a credential is never put in a query (component state only)
      gcTime: 5 * 60_000,
    },
    mutations: { retry: false },
  },
});

// back from idle: read the live views again (their polling stopped; a lapsed session then leads to the sign-in)
onResume(() => void queryClient.refetchQueries({ type: 'active' }));

/** The session provider sits under the router so that it can send an expired session to /sign-in. */
function Root() {
  return (
    <SessionProvider>
      <Outlet />
    </SessionProvider>
  );
}

/** Pages for a signed-in, enrolled user; others go to /sign-in (remembering where they were going) or /enrol. */
function RequireSession({ enrolment }: { enrolment?: boolean }) {
  const { state } = useSession();
  const location = useLocation();
  if (state.status === 'loading') return <Loading what="Checking your session" />;
  if (state.status === 'signed-out') return <Navigate to="/sign-in" replace state={{ from: location.pathname, expired: state.expired }} />;
  const mustEnrol = state.session.mfaEnrollmentRequired;
  if (mustEnrol && !enrolment) return <Navigate to="/enrol" replace />;
  if (!mustEnrol && enrolment) return <Navigate to="/" replace />;
  return enrolment ? <Outlet /> : <Layout />;
}

const routes: RouteObject[] = [
  {
    element: <Root />,
    children: [
      { path: 'sign-in', element: <SignInPage /> },
      { element: <RequireSession enrolment />, children: [{ path: 'enrol', element: <EnrolPage /> }] },
      { element: <RequireSession />, children: [...corePages, ...extraRoutes, { path: '*', element: <NotFoundPage /> }] },
    ],
  },
];

const router = createBrowserRouter(routes, { basename: '/portal' });

export function App() {
  return (
    <QueryClientProvider client={queryClient}>
      <RouterProvider router={router} />
    </QueryClientProvider>
  );
}
