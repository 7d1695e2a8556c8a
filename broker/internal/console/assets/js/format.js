// Formatting of figures and of record bytes.

const nf = new Intl.NumberFormat('en-US');

export function num(n) {
  return n === null || n === undefined || n < 0 ? '–' : nf.format(n);
}

export function rate(r) {
  if (r === null || r === undefined) return '–';
  return (r >= 100 ? nf.format(Math.round(r)) : r.toFixed(1)) + '/s';
}

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

export function time(ms) {
  if (ms === null || ms === undefined || ms < 0) return '–';
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

// fromBase64 turns the API's base64 bytes into a Uint8Array (null stays null).
export function fromBase64(s) {
  if (s === null || s === undefined) return null;
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const utf8 = new TextDecoder('utf-8', {fatal: true});

function hex(b) {
  return Array.from(b, x => x.toString(16).padStart(2, '0')).join(' ');
}

// decode shows bytes as text, JSON (indented) or hex; auto shows JSON
// objects and arrays on one line, UTF-8 without control characters as
// text, and anything else as hex.
export function decode(b, mode) {
  if (b === null) return 'null';
  if (mode === 'hex') return hex(b);
  let text = null;
  try { text = utf8.decode(b); } catch { text = null; }
  if (mode === 'text') return text ?? '(not UTF-8) ' + hex(b);
  if (mode === 'json') {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return '(not JSON) ' + (text ?? hex(b)); }
  }
  if (text !== null && /^\s*[{[]/.test(text)) {
    try { return JSON.stringify(JSON.parse(text)); } catch { /* not JSON: fall through */ }
  }
  // eslint-disable-next-line no-control-regex
  if (text !== null && !/[\u0000-\u0008\u000e-\u001f]/.test(text)) return text;
  return hex(b);
}
