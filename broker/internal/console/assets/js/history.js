// Samples of figures the pages poll, kept while the page is open so
// rates and lag can be drawn over time. They survive navigation between
// pages (the console is one page) but not a reload.

import {h} from './dom.js';

const keep = 180;
const series = new Map();

// sample records value v of series key at time t (ms); a repeated t is
// ignored.
export function sample(key, t, v) {
  let s = series.get(key);
  if (!s) { s = []; series.set(key, s); }
  if (s.length && s[s.length - 1].t >= t) return;
  s.push({t, v});
  if (s.length > keep) s.shift();
}

// rate is the per-second change of a counter series over its last few
// samples, or null before there are two.
export function rate(key, window = 5) {
  const s = series.get(key);
  if (!s || s.length < 2) return null;
  const a = s[Math.max(0, s.length - 1 - window)], b = s[s.length - 1];
  if (b.t === a.t) return null;
  return Math.max(0, (b.v - a.v) * 1000 / (b.t - a.t));
}

// values are a series' values, or the rates between its samples.
export function values(key, asRate = false) {
  const s = series.get(key) || [];
  if (!asRate) return s.map(p => p.v);
  const out = [];
  for (let i = 1; i < s.length; i++) out.push(Math.max(0, (s[i].v - s[i - 1].v) * 1000 / (s[i].t - s[i - 1].t)));
  return out;
}

// spark draws values as a small line chart.
export function spark(vals, w = 140, hgt = 28) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', w);
  svg.setAttribute('height', hgt);
  if (vals.length < 2) return svg;
  const hi = Math.max(...vals, 1);
  const pts = vals.map((v, i) => `${(i * (w - 2) / (vals.length - 1) + 1).toFixed(1)},${(hgt - 2 - v * (hgt - 4) / hi).toFixed(1)}`);
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', pts.join(' '));
  svg.append(line);
  return svg;
}

export function sparkCell(vals) {
  return h('span', {}, spark(vals, 90, 18));
}
