// Draws a topology (the API's parsed Describe() text) as a layered graph:
// topics feed sources, nodes feed their children, sinks feed topics, and
// processors link to their stores. Layers follow the longest path from a
// graph's roots; each layer is ordered by the mean position of its
// parents to keep edges short.

import {rate as fmtRate} from './format.js';

const NS = 'http://www.w3.org/2000/svg';
const LAYER = 78, NODE_H = 34, GAP = 22, PAD = 16, CHAR = 7.3;

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

// build turns the graph into nodes {id, label, kind, sub} and edges
// {from, to, store}.
function build(g) {
  const nodes = new Map(), edges = [];
  const add = (id, label, kind, sub) => {
    if (!nodes.has(id)) nodes.set(id, {id, label, kind, sub, parents: [], children: []});
    return id;
  };
  const edge = (from, to, store = false) => {
    edges.push({from, to, store});
    nodes.get(from).children.push(to);
    nodes.get(to).parents.push(from);
  };
  for (const st of g.subtopologies) {
    for (const n of st.nodes) add('n:' + n.name, n.name, n.kind, st.id);
  }
  for (const st of g.subtopologies) {
    for (const n of st.nodes) {
      const id = 'n:' + n.name;
      if (n.kind === 'source') {
        for (const t of n.topics || []) edge(add('t:' + t, t, 'topic', null), id);
      }
      for (const c of n.children) edge(id, 'n:' + c);
      if (n.kind === 'sink') for (const t of n.topics || []) edge(id, add('t:' + t, t, 'topic', null));
      if (n.dynamicTopic) edge(id, add('d:' + n.name, '(topic per record)', 'topic', null));
      for (const s of n.stores || []) edge(id, add('s:' + s, s, 'store', st.id), true);
    }
  }
  return {nodes, edges};
}

// layer gives every node the length of the longest path to it from a
// root; a cycle (an application reading what it writes) is cut where the
// walk meets a node on its own path.
function layer(nodes) {
  const depth = new Map(), onPath = new Set();
  const visit = id => {
    if (depth.has(id)) return depth.get(id);
    if (onPath.has(id)) return -1;
    onPath.add(id);
    let d = 0;
    for (const p of nodes.get(id).parents) d = Math.max(d, visit(p) + 1);
    onPath.delete(id);
    depth.set(id, d);
    return d;
  };
  for (const id of nodes.keys()) visit(id);
  return depth;
}

// draw returns the SVG of g; rates maps node names to records per second.
export function draw(g, rates = {}) {
  const {nodes, edges} = build(g);
  const depth = layer(nodes);
  const layers = [];
  for (const [id, d] of depth) (layers[d] ||= []).push(id);
  const pos = new Map();
  const width = id => {
    const n = nodes.get(id);
    const r = rates[n.label];
    const text = Math.max(n.label.length, r === undefined || r === null ? 0 : fmtRate(r).length + 2);
    return Math.max(110, text * CHAR + 24);
  };
  let maxW = 0;
  layers.forEach((ids, d) => {
    if (d > 0) {
      const order = id => {
        const ps = nodes.get(id).parents.filter(p => pos.has(p));
        return ps.length ? ps.reduce((s, p) => s + pos.get(p).cx, 0) / ps.length : Infinity;
      };
      ids.sort((a, b) => order(a) - order(b));
    }
    let x = PAD;
    for (const id of ids) {
      const w = width(id);
      pos.set(id, {x, y: PAD + d * LAYER, w, cx: x + w / 2});
      x += w + GAP;
    }
    maxW = Math.max(maxW, x - GAP + PAD);
  });
  // Centre each layer in the widest.
  layers.forEach(ids => {
    const last = pos.get(ids[ids.length - 1]);
    const shift = (maxW - (last.x + last.w + PAD)) / 2;
    for (const id of ids) { const p = pos.get(id); p.x += shift; p.cx += shift; }
  });
  const height = PAD * 2 + (layers.length - 1) * LAYER + NODE_H;
  const root = svg('svg', {width: maxW, height, viewBox: `0 0 ${maxW} ${height}`, role: 'img'});
  root.append(svg('defs', {}, svg('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
    svg('path', {d: 'M0,0 L10,5 L0,10 z', fill: '#98a2b3'}))));
  for (const e of edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    const x1 = a.cx, y1 = a.y + NODE_H, x2 = b.cx, y2 = b.y;
    const mid = (y1 + y2) / 2;
    const attrs = {class: e.store ? 'edge store' : 'edge', d: `M${x1},${y1} C${x1},${mid} ${x2},${mid} ${x2},${y2}`};
    if (!e.store) attrs['marker-end'] = 'url(#arrow)';
    root.append(svg('path', attrs));
  }
  for (const [id, p] of pos) {
    const n = nodes.get(id);
    const r = rates[n.label];
    const g = svg('g', {class: 'node ' + n.kind, 'data-name': n.label, transform: `translate(${p.x},${p.y})`},
      svg('title', {}, `${n.kind} ${n.label}` + (n.sub !== null ? ` (sub-topology ${n.sub})` : '')),
      svg('rect', {width: p.w, height: NODE_H}),
      svg('text', {x: 12, y: r === undefined || r === null ? 21 : 15}, n.label));
    if (r !== undefined && r !== null) g.append(svg('text', {x: 12, y: 28, class: 'rate'}, fmtRate(r)));
    root.append(g);
  }
  return root;
}
