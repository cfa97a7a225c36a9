// One dead letter in full: where it came from, what it carried, every error reported, and
// (with `dlq.resolve`) retry or resolve with a note.
import { useState } from 'react';
import { Link } from 'react-router-dom';
import { useClient, useQuery } from 'urql';

import { graphql } from '../../gql';
import type { DeadLettersFullFragment } from '../../gql/graphql';
import { useCan } from '../../session';
import {
  Empty,
  ErrorNote,
  newRequestId,
  ReasonAction,
  Section,
  Time,
  useAction,
  useRefetchOnReconnect,
} from '../../ui';

graphql(`
  fragment DeadLettersFull on DlqMessage {
    id
    queue
    subject
    stream
    streamSequence
    taskId
    tenantId
    headers
    payload
    reason
    attempts
    errors { attempt at error }
    lastError
    firstDeliveredAt
    lastDeliveredAt
    deadAt
    status
    note
    resolvedBy
    resolvedAt
    redriveId
  }
`);

const DETAIL = graphql(`
  query DeadLettersDetail($id: ID!) {
    dlqMessage(id: $id) { ...DeadLettersFull }
  }
`);

const RESOLVE = graphql(`
  mutation DeadLettersResolve($id: ID!, $note: String!) {
    resolveDlqMessage(id: $id, note: $note) { ...DeadLettersFull }
  }
`);

const RETRY = graphql(`
  mutation DeadLettersRetry($id: ID!, $requestId: String!) {
    retryDlqMessage(id: $id, requestId: $requestId) { ...DeadLettersFull }
  }
`);

/** Pretty JSON when the text is JSON, else the text as it came. */
function pretty(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/** The headers are a JSON object of strings; anything else is shown raw. */
function headerPairs(text: string): [string, string][] | null {
  try {
    const v: unknown = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.entries(v as Record<string, unknown>).map(([k, x]) => [
        k,
        typeof x === 'string' ? x : JSON.stringify(x),
      ]);
    }
  } catch {
    // Not JSON: shown raw below.
  }
  return null;
}

export function Detail({
  id,
  onChanged,
}: {
  id: string;
  /** Tells the list and the queue figures that this letter changed. */
  onChanged: () => void;
}) {
  const can = useCan();
  const client = useClient();
  const [{ data, error, fetching }, refetch] = useQuery({ query: DETAIL, variables: { id } });
  useRefetchOnReconnect(() => {
    setAnswered(null);
    refetch({ requestPolicy: 'network-only' });
  });
  const action = useAction();
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string | null>(null);
  // What the last action answered: newer than the query's answer until that is fetched again.
  const [answered, setAnswered] = useState<DeadLettersFullFragment | null>(null);
  const m = answered ?? data?.dlqMessage;
  const close = <Link to={{ search: '' }}>Close</Link>;

  if (!m) {
    return (
      <Section title="Dead letter" actions={close}>
        <ErrorNote error={error} />
        {!error && fetching && <Empty>Loading…</Empty>}
      </Section>
    );
  }

  const retry = async () => {
    setBusy(true);
    setDone(null);
    const r = await action.run(client.mutation(RETRY, { id: m.id, requestId: newRequestId() }).toPromise());
    setBusy(false);
    if (r) {
      setAnswered(r.retryDlqMessage);
      setDone(`Published back to ${r.retryDlqMessage.subject}; its task is pending again.`);
      onChanged();
    }
  };
  const resolve = async (note: string) => {
    setDone(null);
    const r = await action.run(client.mutation(RESOLVE, { id: m.id, note }).toPromise());
    if (r) {
      setAnswered(r.resolveDlqMessage);
      setDone('Resolved.');
      onChanged();
    }
  };
  const headers = headerPairs(m.headers);

  return (
    <Section title={`Dead letter ${m.id}`} actions={close}>
      <div className="dlq-detail">
        <p className="dlq-status">
          Status <span className={`badge ${m.status === 'OPEN' ? 'bad' : 'ok'} status`}>{m.status}</span>{' '}
          <span className="badge">{m.reason}</span>
        </p>
        {can('dlq.resolve') && m.status === 'OPEN' && (
          <div className="row dlq-actions">
            <button type="button" className="primary" onClick={() => void retry()} disabled={busy}>
              {busy ? 'Retrying…' : 'Retry'}
            </button>
            <ReasonAction label="Resolve" prompt="Note (why no retry)" onSubmit={resolve} />
          </div>
        )}
        <ErrorNote error={action.error} />
        {done && (
          <p className="notice" role="status">
            {done}
          </p>
        )}
        <dl className="dlq-facts">
          <dt>Queue</dt>
          <dd>{m.queue}</dd>
          <dt>Subject</dt>
          <dd className="mono">{m.subject}</dd>
          <dt>Stream</dt>
          <dd className="mono">
            {m.stream} #{m.streamSequence}
          </dd>
          <dt>Task</dt>
          <dd className="mono">{m.taskId}</dd>
          <dt>Tenant</dt>
          <dd>{m.tenantId ?? '—'}</dd>
          <dt>Attempts</dt>
          <dd>{m.attempts}</dd>
          <dt>First delivered</dt>
          <dd>
            <Time at={m.firstDeliveredAt} />
          </dd>
          <dt>Last delivered</dt>
          <dd>
            <Time at={m.lastDeliveredAt} />
          </dd>
          <dt>Dead at</dt>
          <dd>
            <Time at={m.deadAt} />
          </dd>
          {m.status !== 'OPEN' && (
            <>
              <dt>{m.status === 'RETRIED' ? 'Retried by' : 'Resolved by'}</dt>
              <dd>{m.resolvedBy ?? '—'}</dd>
              <dt>At</dt>
              <dd>
                <Time at={m.resolvedAt} />
              </dd>
            </>
          )}
          {m.note && (
            <>
              <dt>Note</dt>
              <dd>{m.note}</dd>
            </>
          )}
          {m.redriveId && (
            <>
              <dt>Redrive</dt>
              <dd className="mono">{m.redriveId}</dd>
            </>
          )}
        </dl>

        <h3>Errors ({m.errors.length})</h3>
        {m.errors.length === 0 ? (
          <Empty>No error was reported{m.lastError ? `; last: ${m.lastError}` : ''}.</Empty>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Attempt</th>
                  <th scope="col">At</th>
                  <th scope="col">Error</th>
                </tr>
              </thead>
              <tbody>
                {m.errors.map((e, i) => (
                  <tr key={`${e.attempt}-${i}`}>
                    <td>{e.attempt}</td>
                    <td>
                      <Time at={e.at} />
                    </td>
                    <td className="dlq-error-text">{e.error}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}

        <h3>Payload</h3>
        {m.payload == null ? <Empty>No payload.</Empty> : <pre aria-label="Payload">{pretty(m.payload)}</pre>}

        <h3>Headers</h3>
        {headers ? (
          headers.length === 0 ? (
            <Empty>No headers.</Empty>
          ) : (
            <div className="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Header</th>
                    <th scope="col">Value</th>
                  </tr>
                </thead>
                <tbody>
                  {headers.map(([k, v]) => (
                    <tr key={k}>
                      <td className="mono">{k}</td>
                      <td className="mono dlq-error-text">{v}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )
        ) : (
          <pre aria-label="Headers">{m.headers}</pre>
        )}
      </div>
    </Section>
  );
}
