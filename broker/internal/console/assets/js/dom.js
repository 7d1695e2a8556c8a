// Small helpers to build the DOM without a framework.

// h creates an element: h('a', {href: '#/'}, 'text', child, ...). Attributes
// starting with "on" become event listeners; null children are skipped.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

// table returns a table with the given id whose rows fill(rows) replaces.
// columns: [{title, num, cell: row => node|string, show: () => bool}]; a
// column whose show returns false is left out. key(row) names a row so
// that rows new since the previous fill are highlighted.
export function table(id, columns, empty = 'none', key = null) {
  const thead = h('thead');
  const tbody = h('tbody');
  const el = h('table', {id}, thead, tbody);
  let seen = null;
  const head = () => {
    const cols = columns.filter(c => !c.show || c.show());
    thead.replaceChildren(h('tr', {}, cols.map(c => h('th', {class: c.num ? 'num' : null}, c.title))));
    return cols;
  };
  el.fill = rows => {
    const cols = head();
    const keys = new Set();
    tbody.replaceChildren(...rows.map(r => {
      const k = key ? key(r) : null;
      if (k !== null) keys.add(k);
      const fresh = seen !== null && k !== null && !seen.has(k);
      return h('tr', {class: fresh ? 'fresh' : null}, cols.map(c => h('td', {class: c.num ? 'num' : null}, c.cell(r))));
    }));
    if (rows.length === 0) {
      tbody.append(h('tr', {}, h('td', {class: 'empty', colspan: cols.length}, empty)));
    }
    if (key) seen = keys;
  };
  head();
  return el;
}

// card is a figure with a label; set(value, extra) updates it.
export function card(label, id) {
  const value = h('div', {class: 'value', id}, '–');
  const extra = h('div');
  const el = h('div', {class: 'card'}, h('div', {class: 'label'}, label), value, extra);
  el.set = (v, node = null) => {
    value.textContent = v;
    extra.replaceChildren(...(node ? [node] : []));
  };
  return el;
}

export function link(href, text) {
  return h('a', {href}, text);
}
