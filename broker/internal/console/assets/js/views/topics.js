// The topic list.

import {get, enc} from '../api.js';
import {h, table, link} from '../dom.js';
import {num, rate, bytes} from '../format.js';
import * as hist from '../history.js';

export function mount(el) {
  let withSizes = false;
  const topics = table('topics', [
    {title: 'Topic', cell: t => link('#/topics/' + enc(t.name), t.name)},
    {title: 'Id', cell: t => h('span', {class: 'muted'}, t.id)},
    {title: 'Partitions', num: true, cell: t => String(t.partitions)},
    {title: 'Replicas', num: true, cell: t => String(t.replicas)},
    {title: 'Records', num: true, cell: t => num(t.records)},
    {title: 'Size', num: true, cell: t => bytes(t.size), show: () => withSizes},
    {title: 'Produce rate', num: true, cell: t => rate(hist.rate('topic:' + t.name))},
  ], 'no topics', t => t.name);
  el.append(h('h1', {}, 'Topics'), topics);
  return {
    async refresh() {
      const {topics: ts, time} = await get('topics');
      withSizes = ts.some(t => t.size !== undefined);
      for (const t of ts) hist.sample('topic:' + t.name, time, t.endOffsets);
      topics.fill(ts);
    },
  };
}
