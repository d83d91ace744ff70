// The overview's graph of message rates, drawn on a <canvas>.

import { fmtRate } from './format.js';

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, for the graph's scale.
function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// drawRates draws samples ({t: performance.now() time, in, out} in messages per second) on canvas c as
// two lines over the last windowS seconds, with a scale of four round steps. Colors come from the CSS
// custom properties --in, --out, --grid and --muted, so the page's theme applies.
export function drawRates(c, samples, windowS) {
  const w = c.clientWidth;
  const h = c.clientHeight;
  if (!w || !h) return; // not shown
  const dpr = window.devicePixelRatio || 1;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
  }
  const g = c.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const css = getComputedStyle(c);
  const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const pad = { l: 56, r: 14, t: 10, b: 24 };
  const now = performance.now();
  const x = (t) => pad.l + (1 - (now - t) / (windowS * 1000)) * (w - pad.l - pad.r);
  // Four grid steps of 1, 2 or 5 times a power of ten, at least 1 msg/s each.
  const step = niceCeil(Math.max(4, ...samples.map((s) => Math.max(s.in, s.out))) / 4);
  const max = 4 * step;
  const y = (v) => h - pad.b - (v / max) * (h - pad.t - pad.b);

  g.lineWidth = 1;
  g.strokeStyle = color('--grid', '#e3e6ec');
  g.fillStyle = color('--muted', '#5b6475');
  g.font = '11px system-ui, sans-serif';
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const v = step * i;
    const yy = Math.round(y(v)) + 0.5;
    g.beginPath();
    g.moveTo(pad.l, yy);
    g.lineTo(w - pad.r, yy);
    g.stroke();
    g.fillText(fmtRate(v), pad.l - 6, yy);
  }
  g.textAlign = 'center';
  g.textBaseline = 'top';
  for (let m = 0; m <= windowS / 60; m++) {
    g.fillText(m ? `−${m} min` : 'now', x(now - m * 60000), h - pad.b + 6);
  }

  g.save();
  g.beginPath();
  g.rect(pad.l, 0, w - pad.l - pad.r, h);
  g.clip();
  g.lineWidth = 2;
  g.lineJoin = 'round';
  for (const [key, name, fallback] of [['in', '--in', '#1c7ed6'], ['out', '--out', '#e8590c']]) {
    g.strokeStyle = color(name, fallback);
    g.beginPath();
    samples.forEach((s, i) => (i ? g.lineTo(x(s.t), y(s[key])) : g.moveTo(x(s.t), y(s[key]))));
    g.stroke();
  }
  g.restore();
  // A dot on the latest rates: the lines are too short to see in the first seconds.
  const last = samples[samples.length - 1];
  if (last) {
    for (const [key, name, fallback] of [['out', '--out', '#e8590c'], ['in', '--in', '#1c7ed6']]) {
      g.fillStyle = color(name, fallback);
      g.beginPath();
      g.arc(x(last.t), y(last[key]), 3.5, 0, 2 * Math.PI);
      g.fill();
    }
  }
}
