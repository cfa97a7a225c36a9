// A run's output as it streams: `sandboxRunOutput` from offset 0 (the stored chunks, then
// live ones, then one `done` delivery with the final run). Bytes are decoded from `base64`
// with one streaming decoder per stream, so a character split across chunks stays whole.
// Each delivery carries its byte offset: anything already shown is skipped, so a
// resubscription (after the socket reconnects, or after `SUBSCRIPTION_LAGGED`) resumes at
// the last `nextOffset` without repeating or losing a byte.
import { useEffect, useRef, useState } from 'react';
import { useClient } from 'urql';

import { ws } from '../../client';
import type { SandboxRunFieldsFragment, SandboxStream } from '../../gql/graphql';
import { OUTPUT } from './ops';

export interface Segment {
  stream: SandboxStream;
  text: string;
}

export interface RunOutput {
  runId: string | null;
  segments: Segment[];
  /** Bytes received so far (the next offset to ask for). */
  received: number;
  /** The run's final state, from the `done` delivery. */
  final: SandboxRunFieldsFragment | null;
  error: unknown;
}

interface Live {
  runId: string | null;
  next: number;
  done: boolean;
  decoders: Record<SandboxStream, TextDecoder>;
}

function fresh(runId: string | null): Live {
  return {
    runId,
    next: 0,
    done: false,
    decoders: { STDOUT: new TextDecoder(), STDERR: new TextDecoder() },
  };
}

const empty = (runId: string | null): RunOutput => ({
  runId,
  segments: [],
  received: 0,
  final: null,
  error: null,
});

function decodeBase64(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * Streams `runId`'s output. `onFirstOutput` runs once when output first arrives (the run
 * is running by then), `onDone` when the run ends: the caller refreshes what it shows.
 */
export function useRunOutput(
  runId: string | null,
  onFirstOutput: () => void,
  onDone: (run: SandboxRunFieldsFragment) => void,
): RunOutput {
  const client = useClient();
  const [state, setState] = useState<RunOutput>(() => empty(runId));
  const live = useRef<Live>(fresh(runId));
  // Bumped to subscribe again from the last offset received.
  const [attempt, setAttempt] = useState(0);
  const callbacks = useRef({ onFirstOutput, onDone });
  callbacks.current = { onFirstOutput, onDone };

  useEffect(() => {
    if (live.current.runId !== runId) {
      live.current = fresh(runId);
      setState(empty(runId));
    }
    if (!runId || live.current.done) return;
    const mine = live.current;
    setState((s) => (s.error ? { ...s, error: null } : s));
    const sub = client
      .subscription(OUTPUT, { runId, fromOffset: mine.next })
      .subscribe((result) => {
        if (live.current !== mine || mine.done) return;
        if (result.error) {
          const code = result.error.graphQLErrors[0]?.extensions?.code;
          // Fell behind the live stream: the server closed it; resume from what we have.
          if (code === 'SUBSCRIPTION_LAGGED') {
            setAttempt((a) => a + 1);
            return;
          }
          setState((s) => ({ ...s, error: result.error }));
          return;
        }
        const event = result.data?.sandboxRunOutput;
        if (!event) return;
        if (event.done) {
          mine.done = true;
          const run = event.run ?? null;
          // Flush whatever partial characters the decoders still hold.
          const tails: Segment[] = (['STDOUT', 'STDERR'] as const)
            .map((stream) => ({ stream, text: mine.decoders[stream].decode() }))
            .filter((t) => t.text);
          setState((s) => ({ ...s, segments: merge(s.segments, tails), final: run }));
          if (run) callbacks.current.onDone(run);
          return;
        }
        if (!event.stream || !event.base64 || event.nextOffset <= mine.next) return;
        let data = decodeBase64(event.base64);
        if (event.offset < mine.next) data = data.subarray(mine.next - event.offset);
        const first = mine.next === 0;
        mine.next = event.nextOffset;
        const text = mine.decoders[event.stream].decode(data, { stream: true });
        const received = mine.next;
        setState((s) => ({
          ...s,
          received,
          segments: text ? merge(s.segments, [{ stream: event.stream!, text }]) : s.segments,
        }));
        if (first) callbacks.current.onFirstOutput();
      });
    // The socket dropped and came back: graphql-ws resubscribes with the first offset, so
    // subscribe again from the last one received instead of replaying it all.
    let dropped = false;
    const offClosed = ws.on('closed', () => {
      dropped = true;
    });
    const offConnected = ws.on('connected', () => {
      if (dropped && !mine.done) setAttempt((a) => a + 1);
    });
    return () => {
      offClosed();
      offConnected();
      sub.unsubscribe();
    };
  }, [client, runId, attempt]);

  return state.runId === runId ? state : empty(runId);
}

/** Appends pieces, joining neighbours of the same stream (fewer DOM nodes for long runs). */
function merge(segments: Segment[], more: Segment[]): Segment[] {
  if (!more.length) return segments;
  const out = segments.slice();
  for (const m of more) {
    const last = out[out.length - 1];
    if (last && last.stream === m.stream) out[out.length - 1] = { stream: m.stream, text: last.text + m.text };
    else out.push(m);
  }
  return out;
}
