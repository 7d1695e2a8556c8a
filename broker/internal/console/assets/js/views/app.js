// One streams application: its topology drawn as a graph, with per-node
// rates when the application reports processed counts.

import {get, enc} from '../api.js';
import {h} from '../dom.js';
import {time} from '../format.js';
import * as hist from '../history.js';
import {draw} from '../graph.js';

export function mount(el, id) {
  const info = h('p', {class: 'muted', id: 'app-info'});
  const box = h('div', {class: 'graph', id: 'graph'});
  el.append(h('h1', {}, id, h('small', {}, 'streams application')), info, box);
  let shape = '';
  return {
    async refresh() {
      const a = await get('apps/' + enc(id));
      for (const [node, n] of Object.entries(a.processed)) hist.sample(`app:${id}:${node}`, a.updated, n);
      const rates = {};
      for (const node of Object.keys(a.processed)) rates[node] = hist.rate(`app:${id}:${node}`);
      info.textContent = `${a.graph.subtopologies.length} sub-topologies, registered ${time(a.updated)}`;
      const next = JSON.stringify([a.graph, rates]);
      if (next !== shape) {
        shape = next;
        box.replaceChildren(draw(a.graph, rates));
      }
    },
  };
}
