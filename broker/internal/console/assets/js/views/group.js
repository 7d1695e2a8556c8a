// One consumer group: protocol, members and their assignment, committed
// offsets and lag per partition, and lag over time (sampled while the
// page polls).

import {get, enc} from '../api.js';
import {h, table, card} from '../dom.js';
import {num} from '../format.js';
import * as hist from '../history.js';

export function assignmentText(a) {
  return a.length === 0 ? '–' : a.map(tp => `${tp.topic} [${tp.partitions.join(', ')}]`).join('; ');
}

export function mount(el, name) {
  const state = card('State', 'group-state');
  const protocol = card('Protocol', 'group-protocol');
  const memberCount = card('Members', 'member-count');
  const lag = card('Total lag', 'total-lag');
  const members = table('members', [
    {title: 'Member', cell: m => h('span', {title: m.memberId}, m.memberId.length > 28 ? m.memberId.slice(0, 28) + '…' : m.memberId)},
    {title: 'Instance', cell: m => m.instanceId ?? '–'},
    {title: 'Client', cell: m => m.clientId},
    {title: 'Host', cell: m => m.clientHost},
    {title: 'Epoch', num: true, cell: m => m.epoch ?? '–'},
    {title: 'Assignment', cell: m => assignmentText(m.assignment)},
  ], 'no members');
  const key = (l) => `lag:${name}:${l.topic}:${l.partition}`;
  const lags = table('lag', [
    {title: 'Topic', cell: l => l.topic},
    {title: 'Partition', num: true, cell: l => String(l.partition)},
    {title: 'Committed', num: true, cell: l => l.committed === null ? '–' : num(l.committed)},
    {title: 'End offset', num: true, cell: l => num(l.end)},
    {title: 'Lag', num: true, cell: l => l.lag === null ? '–' : num(l.lag)},
    {title: 'Lag over time', cell: l => hist.sparkCell(hist.values(key(l)))},
    {title: 'Owner', cell: l => l.member ? l.member.slice(0, 20) : '–'},
    {title: 'Error', cell: l => l.error ? h('span', {class: 'tag bad'}, l.error) : ''},
  ], 'no committed or assigned partitions');
  el.append(
    h('h1', {}, name, h('small', {id: 'group-type'})),
    h('div', {class: 'cards'}, state, protocol, memberCount, lag),
    h('h2', {}, 'Members'), members,
    h('h2', {}, 'Offsets and lag'), lags);
  return {
    async refresh() {
      const g = await get('groups/' + enc(name));
      document.getElementById('group-type').textContent = g.type === 'consumer' ?
        `consumer protocol (KIP-848), epoch ${g.epoch}, coordinator ${g.coordinator}` :
        `classic protocol, coordinator ${g.coordinator}`;
      hist.sample('lag:' + name, g.time, g.totalLag);
      for (const l of g.lag) if (l.lag !== null) hist.sample(key(l), g.time, l.lag);
      state.set(g.state);
      protocol.set(g.type === 'consumer' ? `${g.protocolType} / ${g.assignor}` : `${g.protocolType || '–'} / ${g.protocol || '–'}`);
      memberCount.set(String(g.members.length));
      lag.set(num(g.totalLag), hist.spark(hist.values('lag:' + name)));
      members.fill(g.members);
      lags.fill(g.lag);
    },
  };
}
