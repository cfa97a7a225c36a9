// The Sandbox view's GraphQL operations: languages, the runs list, one run, starting and
// cancelling, and a run's output stream.
import { graphql } from '../../gql';
import type { SandboxRunStatus } from '../../gql/graphql';

graphql(`
  fragment SandboxRunFields on SandboxRun {
    id
    language
    status
    exitCode
    signal
    error
    cancelRequested
    durationMs
    queueWaitMs
    peakMemoryBytes
    stdoutBytes
    stderrBytes
    stdoutTruncated
    stderrTruncated
    storedBytes
    replica
    taskId
    createdBy
    createdAt
    startedAt
    finishedAt
    limits { memoryMb cpus timeoutMs pids outputBytes }
  }
`);

export const LANGUAGES = graphql(`
  query SandboxLanguages {
    sandboxLanguages { name image file command unavailable }
  }
`);

export const LIMITS_QUERY = graphql(`
  query SandboxLimits {
    sandboxLimits {
      defaults { memoryMb cpus timeoutMs pids outputBytes }
      maxima { memoryMb cpus timeoutMs pids outputBytes }
      maxCodeBytes
      maxStdinBytes
    }
  }
`);

export const RUNS = graphql(`
  query SandboxRuns($filter: SandboxRunFilter, $first: Int, $after: String) {
    sandboxRuns(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { id language status exitCode durationMs createdBy createdAt cancelRequested }
    }
  }
`);

export const RUN = graphql(`
  query SandboxRunDetail($id: ID!) {
    sandboxRun(id: $id) {
      ...SandboxRunFields
      code
      stdin
    }
  }
`);

export const START = graphql(`
  mutation SandboxStartRun($input: StartSandboxRunInput!) {
    startSandboxRun(input: $input) { id status }
  }
`);

export const CANCEL = graphql(`
  mutation SandboxCancelRun($id: ID!) {
    cancelSandboxRun(id: $id) { ...SandboxRunFields }
  }
`);

export const OUTPUT = graphql(`
  subscription SandboxRunOutput($runId: ID!, $fromOffset: Int) {
    sandboxRunOutput(runId: $runId, fromOffset: $fromOffset) {
      offset
      nextOffset
      stream
      base64
      done
      run { ...SandboxRunFields }
    }
  }
`);

/** The states a run no longer leaves. */
export const ENDED: ReadonlySet<SandboxRunStatus> = new Set<SandboxRunStatus>(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'OOM_KILLED', 'CANCELLED', 'LOST']);

/** Every status, in the schema's order, for the list's filter. */
export const STATUSES: readonly SandboxRunStatus[] = [
  'QUEUED',
  'RUNNING',
  'SUCCEEDED',
  'FAILED',
  'TIMED_OUT',
  'OOM_KILLED',
  'CANCELLED',
  'LOST',
];

/** Status changes of every run the caller may read (the list and the open run follow them). */
export const RUN_CHANGED = graphql(`
  subscription SandboxRunChanged {
    sandboxRunChanged { cursor kind runId status }
  }
`);
