// The form that queues a run: a language the server has configured, the program, optional
// stdin and limits (each left empty takes the server's default; the server's defaults and
// maxima come from `sandboxLimits`). One idempotency key is
// kept per form content, so resubmitting after a failed answer cannot start the run twice;
// any change, or a started run, takes a new key.
import { useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import { useMutation, useQuery } from 'urql';

import type { SandboxLanguagesQuery, SandboxLimitsInput } from '../../gql/graphql';
import { ErrorNote, newRequestId, Section } from '../../ui';
import { LIMITS_QUERY, START } from './ops';

type Language = SandboxLanguagesQuery['sandboxLanguages'][number];

const LIMITS: { key: keyof SandboxLimitsInput; label: string; step?: string; min: number }[] = [
  { key: 'timeoutMs', label: 'Timeout (ms)', min: 1 },
  { key: 'memoryMb', label: 'Memory (MB)', min: 1 },
  { key: 'cpus', label: 'CPUs', step: '0.1', min: 0.1 },
  { key: 'pids', label: 'Processes', min: 1 },
  { key: 'outputBytes', label: 'Output kept (bytes)', min: 1 },
];

export function StartRun({
  languages,
  onStarted,
}: {
  languages: Language[];
  onStarted: (runId: string) => void;
}) {
  const firstReady = languages.find((l) => !l.unavailable)?.name ?? languages[0]?.name ?? '';
  const [language, setLanguage] = useState('');
  const [code, setCode] = useState('');
  const [stdin, setStdin] = useState('');
  const [limits, setLimits] = useState<Partial<Record<keyof SandboxLimitsInput, string>>>({});
  const [result, start] = useMutation(START);
  const [{ data: bounds }] = useQuery({ query: LIMITS_QUERY });
  const defaults = bounds?.sandboxLimits.defaults;
  const maxima = bounds?.sandboxLimits.maxima;
  const [error, setError] = useState<unknown>(null);
  const requestId = useRef(newRequestId());

  const chosen = language || firstReady;
  const lang = languages.find((l) => l.name === chosen);
  const changed = () => {
    requestId.current = newRequestId();
  };

  const submit = async (e?: FormEvent) => {
    e?.preventDefault();
    if (result.fetching || !chosen || !code.trim()) return;
    const asked: SandboxLimitsInput = {};
    for (const { key } of LIMITS) {
      const raw = limits[key]?.trim();
      if (raw) asked[key] = Number(raw);
    }
    const r = await start({
      input: {
        language: chosen,
        code,
        stdin: stdin === '' ? null : stdin,
        limits: Object.keys(asked).length ? asked : null,
        requestId: requestId.current,
      },
    });
    setError(r.error ?? null);
    const run = r.data?.startSandboxRun;
    if (run) {
      // The same program may be run again: that is a new run, so a new key.
      requestId.current = newRequestId();
      onStarted(run.id);
    }
  };

  // Ctrl/⌘+Enter in the code or stdin starts the run without leaving the keyboard.
  const shortcut = (e: KeyboardEvent) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void submit();
    }
  };

  return (
    <Section title="Start a run">
      <form className="sandbox-start" onSubmit={submit} aria-label="Start a run">
        <div className="row">
          <label>
            Language
            <select
              value={chosen}
              onChange={(e) => {
                setLanguage(e.target.value);
                changed();
              }}
              required
            >
              {languages.map((l) => (
                <option key={l.name} value={l.name} disabled={!!l.unavailable}>
                  {l.name}
                  {l.unavailable ? ' (unavailable)' : ''}
                </option>
              ))}
            </select>
          </label>
          {lang && (
            <span className="muted sandbox-lang-info">
              runs <code>{lang.command.join(' ')}</code> in <code>{lang.image}</code>
            </span>
          )}
        </div>
        {lang?.unavailable && (
          <p className="notice">
            {lang.name} cannot run now: {lang.unavailable}
          </p>
        )}
        {!languages.length && <p className="notice">The server has no sandbox language configured.</p>}
        <label className="sandbox-block">
          Code{lang ? ` (${lang.file})` : ''}
          <textarea
            value={code}
            onChange={(e) => {
              setCode(e.target.value);
              changed();
            }}
            onKeyDown={shortcut}
            rows={10}
            required
            spellCheck={false}
            autoCapitalize="off"
            autoCorrect="off"
          />
        </label>
        <label className="sandbox-block">
          Standard input (optional)
          <textarea
            value={stdin}
            onChange={(e) => {
              setStdin(e.target.value);
              changed();
            }}
            onKeyDown={shortcut}
            rows={2}
            spellCheck={false}
          />
        </label>
        <details className="sandbox-limits">
          <summary>Limits (empty: the server's default; above its maximum is refused)</summary>
          {bounds && (
            <p className="muted">
              Code up to {bounds.sandboxLimits.maxCodeBytes.toLocaleString()} bytes, stdin up to{' '}
              {bounds.sandboxLimits.maxStdinBytes.toLocaleString()} bytes.
            </p>
          )}
          <div className="row">
            {LIMITS.map((f) => (
              <label key={f.key}>
                {f.label}
                <input
                  type="number"
                  inputMode="decimal"
                  min={f.min}
                  max={maxima?.[f.key] ?? undefined}
                  step={f.step ?? '1'}
                  value={limits[f.key] ?? ''}
                  placeholder={defaults ? `default ${defaults[f.key]}` : 'default'}
                  title={maxima ? `at most ${maxima[f.key]}` : undefined}
                  onChange={(e) => {
                    setLimits((l) => ({ ...l, [f.key]: e.target.value }));
                    changed();
                  }}
                />
              </label>
            ))}
          </div>
        </details>
        <div className="row sandbox-actions">
          <button
            type="submit"
            disabled={result.fetching || !code.trim() || !lang || !!lang.unavailable}
          >
            {result.fetching ? 'Starting…' : 'Start run'}
          </button>
          <span className="muted">Ctrl+Enter in the code starts it too.</span>
        </div>
        <ErrorNote error={error} />
      </form>
    </Section>
  );
}
