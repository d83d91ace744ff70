// Formatting of the API's values for the page: numbers, byte sizes, durations and times.

const numberFormat = new Intl.NumberFormat();
const rateFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export function fmtNumber(v) {
  return typeof v === 'number' ? numberFormat.format(v) : v == null ? '' : String(v);
}

export function fmtBytes(v) {
  if (typeof v !== 'number') return v == null ? '' : String(v);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? String(v) : rateFormat.format(v)) + ' ' + units[i];
}

export function fmtValue(v) {
  if (v == null) return '';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') return numberFormat.format(v);
  if (Array.isArray(v)) return v.map(fmtValue).join(', ');
  if (typeof v === 'object') {
    return Object.entries(v).map(([k, x]) => `${k} ${fmtValue(x)}`).join(', ');
  }
  return String(v);
}

// fmtReasons shows counts by reason, leaving out the zeros.
export function fmtReasons(v) {
  if (!v || typeof v !== 'object') return fmtValue(v);
  const parts = Object.entries(v).filter(([, n]) => n).map(([k, n]) => `${k.replaceAll('_', ' ')} ${fmtNumber(n)}`);
  return parts.length ? parts.join(', ') : 'none';
}

// fmtCount shows a list by its length (the list itself goes in the cell's title).
export function fmtCount(v) {
  return Array.isArray(v) ? numberFormat.format(v.length) : fmtValue(v);
}

export function fmtDuration(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export function parseTime(v) {
  if (!v) return null;
  const t = new Date(v);
  return isNaN(t) || t.getFullYear() < 1971 ? null : t;
}

// fmtSince is a past time as "5m 3s ago"; fmtUntil a future one as "in 2h 1m".
export function fmtSince(v) {
  const t = parseTime(v);
  return t ? fmtDuration((Date.now() - t) / 1000) + ' ago' : '';
}

export function fmtUntil(v) {
  const t = parseTime(v);
  if (!t) return '';
  const s = (t - Date.now()) / 1000;
  return s > 0 ? 'in ' + fmtDuration(s) : 'now';
}

export function fullTime(v) {
  const t = parseTime(v);
  return t ? t.toLocaleString() : '';
}

export function fmtRate(v) {
  return rateFormat.format(v);
}
