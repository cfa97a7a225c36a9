// The Sandbox view: start a program in a configured language (with `sandbox.run`), watch its
// output stream in, cancel it while it is queued or running, and browse every run. The
// selected run is in the address (/sandbox/<id>), so it can be shared and survives a reload.
// Observers (`sandbox.view` only) see runs and output without the start and cancel controls.
import { useCallback, useState } from 'react';
import { useNavigate, useParams } from 'react-router-dom';
import { useQuery, useSubscription } from 'urql';

import { useCan } from '../session';
import { Empty, ErrorNote, Section, useRefetchOnReconnect } from '../ui';
import { useCoalesced } from '../live';
import { LANGUAGES, RUN_CHANGED } from './sandbox/ops';
import { RunDetail } from './sandbox/RunDetail';
import { RunsList } from './sandbox/RunsList';
import { StartRun } from './sandbox/StartRun';
import './Sandbox.css';

export function Sandbox() {
  const can = useCan();
  const navigate = useNavigate();
  const selected = useParams()['*']?.split('/')[0] || null;
  const [{ data: langs, error: langError }, refetchLangs] = useQuery({ query: LANGUAGES });
  useRefetchOnReconnect(() => refetchLangs({ requestPolicy: 'network-only' }));
  // Bumped whenever the runs list should be fetched again: a run started here, and every
  // status change `sandboxRunChanged` reports (coalesced: a busy fleet changes often).
  const [listKey, setListKey] = useState(0);
  const refreshList = useCallback(() => setListKey((k) => k + 1), []);
  const listChanged = useCoalesced(refreshList, 300);
  // Bumped when the open run's status changes, so its panel reads it again.
  const [runKey, setRunKey] = useState(0);
  useSubscription({ query: RUN_CHANGED }, (_, data) => {
    listChanged();
    if (data.sandboxRunChanged.runId === selected) setRunKey((k) => k + 1);
    return data;
  });
  const languages = langs?.sandboxLanguages ?? [];

  return (
    <div className="sandbox">
      <h1>Sandbox</h1>
      <ErrorNote error={langError} />
      <div className="sandbox-top">
        {can('sandbox.run') && (
          <StartRun
            languages={languages}
            onStarted={(id) => {
              navigate(`/sandbox/${id}`);
              refreshList();
            }}
          />
        )}
        {selected ? (
          <RunDetail key={selected} runId={selected} changed={runKey} onStatusChange={refreshList} />
        ) : (
          <Section title="Run">
            <Empty>
              {can('sandbox.run') ? 'Start a run, or choose' : 'Choose'} one in the list to see its
              output.
            </Empty>
          </Section>
        )}
      </div>
      <RunsList languages={languages.map((l) => l.name)} selected={selected} refreshKey={listKey} />
    </div>
  );
}
