// Spend over time, drawn by hand in SVG from the budget's ledger: every ledger row carries the
// budget's `used`, `reserved` and `total` right after it, so the cumulative spend is a step
// line through those values (a period reset drops it back to zero), the limit a dashed one.
import { useEffect, useId, useRef, useState, type RefObject } from 'react';

import { compact, fmt } from './live';

export interface LedgerPoint {
  at: string;
  usedAfter: number;
  reservedAfter: number;
  totalAfter: number;
  deltaUsed: number;
  deltaReserved: number;
  deltaTotal: number;
}

interface Step {
  t: number;
  used: number;
  held: number;
  total: number;
}

const HEIGHT = 240;
const M = { top: 14, right: 44, bottom: 44, left: 58 };

/** The container's width in CSS pixels, so labels keep their size at every width. */
function useWidth<T extends HTMLElement>(): [RefObject<T>, number] {
  const ref = useRef<T>(null);
  const [width, setWidth] = useState(600);
  useEffect(() => {
    const el = ref.current;
    if (!el) return undefined;
    const observer = new ResizeObserver((entries) => {
      const w = Math.floor(entries[0]?.contentRect.width ?? 0);
      if (w > 0) setWidth(w);
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

/** A round step (1, 2 or 5 × 10^n) giving about `count` ticks up to `max`. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const nice = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10;
  return Math.max(1, nice * mag);
}

function timeFormat(span: number): Intl.DateTimeFormat {
  if (span <= 15 * 60_000) {
    return new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  if (span <= 36 * 3600_000) return new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  if (span <= 120 * 86400_000) return new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
  return new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short' });
}

export function SpendChart({
  name,
  rows,
  from,
  to,
  current,
  thresholds,
}: {
  /** `tenant/project`, for the title. */
  name: string;
  /** Ledger rows in the range, oldest first. */
  rows: LedgerPoint[];
  /** Range start and end, in ms since the epoch. */
  from: number;
  to: number;
  /** The budget now: the level when the range holds no ledger row. */
  current: { used: number; reserved: number; total: number };
  thresholds: number[];
}) {
  const [wrap, width] = useWidth<HTMLDivElement>();
  const titleId = useId();
  const descId = useId();

  // The level at the start of the range is the first row's values before its change.
  const first = rows[0];
  const start: Step = first
    ? {
        t: from,
        used: first.usedAfter - first.deltaUsed,
        held: first.usedAfter - first.deltaUsed + first.reservedAfter - first.deltaReserved,
        total: first.totalAfter - first.deltaTotal,
      }
    : { t: from, used: current.used, held: current.used + current.reserved, total: current.total };
  const steps: Step[] = [
    start,
    ...rows.map((r) => ({
      t: Math.max(from, Date.parse(r.at)),
      used: r.usedAfter,
      held: r.usedAfter + r.reservedAfter,
      total: r.totalAfter,
    })),
  ];
  const last = steps[steps.length - 1];
  const end = Math.max(to, last.t, from + 1);

  const innerW = Math.max(120, width - M.left - M.right);
  const innerH = HEIGHT - M.top - M.bottom;
  const yMax = Math.max(1, ...steps.map((s) => Math.max(s.total, s.held)));
  const yStep = niceStep(yMax, 4);
  const yTop = Math.ceil(yMax / yStep) * yStep;
  const x = (t: number) => M.left + ((t - from) / (end - from)) * innerW;
  const y = (v: number) => M.top + innerH - (v / yTop) * innerH;

  const stepPath = (value: (s: Step) => number) => {
    let d = `M${x(steps[0].t).toFixed(1)},${y(value(steps[0])).toFixed(1)}`;
    for (const s of steps.slice(1)) d += `H${x(s.t).toFixed(1)}V${y(value(s)).toFixed(1)}`;
    return `${d}H${x(end).toFixed(1)}`;
  };
  const usedLine = stepPath((s) => s.used);
  const area = `${usedLine}V${y(0).toFixed(1)}H${x(from).toFixed(1)}Z`;

  const yTicks: number[] = [];
  for (let v = 0; v <= yTop; v += yStep) yTicks.push(v);
  const xCount = Math.max(2, Math.min(6, Math.floor(innerW / 110)));
  const xTicks = Array.from({ length: xCount + 1 }, (_, i) => from + ((end - from) * i) / xCount);
  const tf = timeFormat(end - from);
  const full = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  const peak = Math.max(...steps.map((s) => s.used));
  const summary = rows.length
    ? `${rows.length} ledger rows from ${full.format(from)} to ${full.format(end)}: used went from ${fmt(start.used)} to ${fmt(last.used)} tokens (peak ${fmt(peak)}) of a limit of ${fmt(last.total)}.`
    : `No ledger rows from ${full.format(from)} to ${full.format(end)}: used stayed at ${fmt(start.used)} of ${fmt(start.total)} tokens.`;

  return (
    <figure className="spend-chart" ref={wrap}>
      <svg
        width={width}
        height={HEIGHT}
        viewBox={`0 0 ${width} ${HEIGHT}`}
        role="img"
        aria-labelledby={titleId}
        aria-describedby={descId}
      >
        <title id={titleId}>Spend over time of {name}</title>
        <desc id={descId}>{summary}</desc>
        <g className="axis" aria-hidden="true">
          {yTicks.map((v) => (
            <g key={v}>
              <line className="grid-line" x1={M.left} x2={M.left + innerW} y1={y(v)} y2={y(v)} />
              <text x={M.left - 6} y={y(v)} dy="0.32em" textAnchor="end">
                {compact(v)}
              </text>
            </g>
          ))}
          {xTicks.map((t, i) => (
            <g key={t}>
              <line x1={x(t)} x2={x(t)} y1={M.top + innerH} y2={M.top + innerH + 4} />
              <text
                x={x(t)}
                y={M.top + innerH + 16}
                textAnchor={i === 0 ? 'start' : i === xTicks.length - 1 ? 'end' : 'middle'}
              >
                {tf.format(t)}
              </text>
            </g>
          ))}
          <line x1={M.left} x2={M.left + innerW} y1={M.top + innerH} y2={M.top + innerH} />
          <line x1={M.left} x2={M.left} y1={M.top} y2={M.top + innerH} />
          <text className="axis-title" x={M.left + innerW / 2} y={HEIGHT - 4} textAnchor="middle">
            time (local)
          </text>
          <text
            className="axis-title"
            transform={`translate(12 ${M.top + innerH / 2}) rotate(-90)`}
            textAnchor="middle"
          >
            tokens
          </text>
        </g>
        <g aria-hidden="true">
          {thresholds.map((t) => {
            const v = (last.total * t) / 100;
            if (v > yTop || last.total <= 0) return null;
            return (
              <g key={t} className="threshold">
                <line x1={M.left} x2={M.left + innerW} y1={y(v)} y2={y(v)} />
                <text x={M.left + innerW + 4} y={y(v)} dy="0.32em">
                  {t}%
                </text>
              </g>
            );
          })}
          <path className="used-area" d={area} />
          <path className="held-line" d={stepPath((s) => s.held)} />
          <path className="total-line" d={stepPath((s) => s.total)} />
          <path className="used-line" d={usedLine} />
        </g>
      </svg>
      <figcaption className="legend">
        <span>
          <i className="swatch used" /> used
        </span>
        <span>
          <i className="swatch held" /> used + reserved
        </span>
        <span>
          <i className="swatch total" /> limit
        </span>
        <span>
          <i className="swatch threshold" /> alert thresholds
        </span>
      </figcaption>
    </figure>
  );
}
