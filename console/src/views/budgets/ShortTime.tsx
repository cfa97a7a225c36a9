// A time short enough for a table cell: the time of day for today, the date and time
// otherwise; the full date is in the title and the `dateTime` attribute.
export function ShortTime({ at }: { at?: string | null }) {
  if (!at) return <>—</>;
  const d = new Date(at);
  const today = new Date().toDateString() === d.toDateString();
  const text = today
    ? d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  return (
    <time dateTime={at} title={d.toLocaleString()} className="short-time">
      {text}
    </time>
  );
}
