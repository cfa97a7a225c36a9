// The console's frame: login when there is no session, otherwise the navigation (only the
// views the caller's permissions allow) and the routes.
import { Provider } from 'urql';
import { NavLink, Navigate, Route, Routes } from 'react-router-dom';

import { client, useTokenWatch } from './client';
import { logout, useCan, useSession } from './session';
import { Login } from './views/Login';
import { Overview } from './views/Overview';
import { Budgets } from './views/Budgets';
import { DeadLetters } from './views/DeadLetters';
import { Breakers } from './views/Breakers';
import { Governance } from './views/Governance';
import { Sandbox } from './views/Sandbox';
import { Tasks } from './views/Tasks';

/** Each view and the permission that lets a caller see it. */
const VIEWS = [
  { path: 'overview', label: 'Overview', permission: null, element: <Overview /> },
  { path: 'budgets', label: 'Budgets', permission: 'budget.view', element: <Budgets /> },
  { path: 'dead-letters', label: 'Dead letters', permission: 'dlq.read', element: <DeadLetters /> },
  { path: 'breakers', label: 'Breakers', permission: 'breaker.view', element: <Breakers /> },
  { path: 'governance', label: 'Governance', permission: 'learning.view', element: <Governance /> },
  { path: 'sandbox', label: 'Sandbox', permission: 'sandbox.view', element: <Sandbox /> },
  { path: 'tasks', label: 'Tasks', permission: 'task.view', element: <Tasks /> },
] as const;

export function App() {
  const session = useSession();
  useTokenWatch();
  if (!session) return <Login />;
  return (
    <Provider value={client}>
      <Shell />
    </Provider>
  );
}

function Shell() {
  const session = useSession();
  const can = useCan();
  const views = VIEWS.filter((v) => v.permission === null || can(v.permission));
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Aurum</span>
        <nav aria-label="Views" className="views">
          {views.map((v) => (
            <NavLink key={v.path} to={`/${v.path}`}>
              {v.label}
            </NavLink>
          ))}
        </nav>
        <span className="who" aria-label="Signed in as">
          {session?.user.username} <span className="role">{session?.user.role.toLowerCase()}</span>
        </span>
        <button type="button" onClick={() => void logout()}>
          Log out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Routes>
          {views.map((v) => (
            <Route key={v.path} path={`/${v.path}/*`} element={v.element} />
          ))}
          <Route path="*" element={<Navigate to="/overview" replace />} />
        </Routes>
      </main>
    </div>
  );
}
