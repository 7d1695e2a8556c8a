// One share group (KIP-932): members, their assignment, and what
// DescribeShareGroupOffsets shows of each share partition.

import {get, enc} from '../api.js';
import {h, table, card} from '../dom.js';
import {num} from '../format.js';
import {assignmentText} from './group.js';
import * as hist from '../history.js';

export function mount(el, name) {
  const key = p => `share-lag:${name}:${p.topic}:${p.partition}`;
  const state = card('State', 'group-state');
  const memberCount = card('Members', 'member-count');
  const assignor = card('Assignor', 'group-assignor');
  const members = table('members', [
    {title: 'Member', cell: m => m.memberId},
    {title: 'Client', cell: m => m.clientId},
    {title: 'Host', cell: m => m.clientHost},
    {title: 'Epoch', num: true, cell: m => m.epoch ?? '–'},
    {title: 'Subscribed', cell: m => (m.subscribed || []).join(', ')},
    {title: 'Assignment', cell: m => assignmentText(m.assignment)},
  ], 'no members');
  const parts = table('share-partitions', [
    {title: 'Topic', cell: p => p.topic},
    {title: 'Partition', num: true, cell: p => String(p.partition)},
    {title: 'Start offset', num: true, cell: p => num(p.startOffset)},
    {title: 'End offset', num: true, cell: p => num(p.end)},
    {title: 'From start to end', num: true, cell: p => p.end >= 0 && p.startOffset >= 0 ? num(p.end - p.startOffset) : '–'},
    {title: 'Lag', num: true, cell: p => p.lag === null ? 'not reported' : num(p.lag)},
    {title: 'Lag over time', cell: p => hist.sparkCell(hist.values(key(p)))},
    {title: 'Error', cell: p => p.error ? h('span', {class: 'tag bad'}, p.error) : ''},
  ], 'no share partitions yet');
  el.append(
    h('h1', {}, name, h('small', {}, 'share group')),
    h('div', {class: 'cards'}, state, memberCount, assignor),
    h('h2', {}, 'Members'), members,
    h('h2', {}, 'Share partitions'),
    h('p', {class: 'muted'}, 'Records before the start offset are acknowledged or archived; from the start offset to the end they are available or in flight. The broker does not report delivery counts through the protocol.'),
    parts);
  return {
    async refresh() {
      const g = await get('share-groups/' + enc(name));
      state.set(g.state);
      memberCount.set(String(g.members.length));
      assignor.set(g.assignor || '–');
      for (const p of g.partitions) if (p.lag !== null) hist.sample(key(p), g.time, p.lag);
      members.fill(g.members);
      parts.fill(g.partitions);
    },
  };
}
