// Consumer groups (classic and KIP-848) and share groups.

import {get, enc} from '../api.js';
import {h, table, link} from '../dom.js';

export function mount(el) {
  const groups = table('groups', [
    {title: 'Group', cell: g => link((g.type === 'share' ? '#/share-groups/' : '#/groups/') + enc(g.name), g.name)},
    {title: 'Type', cell: g => h('span', {class: g.type === 'share' ? 'tag share' : 'tag'}, g.type)},
    {title: 'State', cell: g => g.state},
    {title: 'Protocol type', cell: g => g.protocolType || '–'},
  ], 'no groups', g => g.name);
  el.append(h('h1', {}, 'Groups'), groups);
  return {
    async refresh() {
      groups.fill(await get('groups'));
    },
  };
}
