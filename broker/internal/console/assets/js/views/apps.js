// Streams applications registered with the console.

import {get, enc} from '../api.js';
import {h, table, link} from '../dom.js';
import {time} from '../format.js';

export function mount(el) {
  const apps = table('apps', [
    {title: 'Application', cell: a => link('#/apps/' + enc(a.id), a.id)},
    {title: 'Sub-topologies', num: true, cell: a => String(a.subtopologies)},
    {title: 'Nodes', num: true, cell: a => String(a.nodes)},
    {title: 'Registered', cell: a => time(a.updated)},
  ], 'no application registered');
  el.append(h('h1', {}, 'Streams applications'), apps,
    h('p', {class: 'muted'}, 'An application registers with PUT api/apps/{id} and a JSON body {"topology": "<Describe() text>", "processed": {"node": count}}, and stays listed while it registers again within a minute.'));
  return {
    async refresh() {
      apps.fill(await get('apps'));
    },
  };
}
