// Cluster overview: brokers, the metadata quorum, topics and throughput.

import {get, enc} from '../api.js';
import {h, table, card, link} from '../dom.js';
import {num, rate, time} from '../format.js';
import * as hist from '../history.js';

export function mount(el) {
  const cluster = card('Cluster id', 'cluster-id');
  const controller = card('Controller', 'controller');
  const topicCount = card('Topics', 'topic-count');
  const records = card('Records', 'record-count');
  const throughput = card('Produced', 'throughput');
  const brokers = table('brokers', [
    {title: 'Node', num: true, cell: b => String(b.nodeId)},
    {title: 'Host', cell: b => b.host},
    {title: 'Port', num: true, cell: b => String(b.port)},
    {title: 'Rack', cell: b => b.rack ?? '–'},
    {title: 'Role', cell: b => b.role},
  ]);
  const quorum = table('quorum', [
    {title: 'Replica', num: true, cell: v => String(v.replicaId)},
    {title: 'Role', cell: v => v.role},
    {title: 'Log end offset', num: true, cell: v => num(v.logEndOffset)},
    {title: 'Last caught up', cell: v => time(v.lastCaughtUpTimestamp)},
  ], 'no quorum answer');
  const quorumInfo = h('p', {class: 'muted', id: 'quorum-info'});
  const topics = table('topics', [
    {title: 'Topic', cell: t => link('#/topics/' + enc(t.name), t.name)},
    {title: 'Partitions', num: true, cell: t => String(t.partitions)},
    {title: 'Records', num: true, cell: t => num(t.records)},
    {title: 'End offsets', num: true, cell: t => num(t.endOffsets)},
    {title: 'Produce rate', num: true, cell: t => rate(hist.rate('topic:' + t.name))},
    {title: 'Rate over time', cell: t => hist.sparkCell(hist.values('topic:' + t.name, true))},
  ], 'no topics', t => t.name);
  el.append(
    h('h1', {}, 'Cluster'),
    h('div', {class: 'cards'}, cluster, controller, topicCount, records, throughput),
    h('div', {class: 'split'},
      h('section', {}, h('h2', {}, 'Brokers'), brokers),
      h('section', {}, h('h2', {}, 'Metadata quorum'), quorumInfo, quorum)),
    h('h2', {}, 'Topics'), topics);

  return {
    async refresh() {
      const o = await get('overview');
      let total = 0, recs = 0;
      for (const t of o.topics) {
        hist.sample('topic:' + t.name, o.time, t.endOffsets);
        total += t.endOffsets;
        recs += t.records;
      }
      hist.sample('cluster', o.time, total);
      cluster.set(o.clusterId || '–');
      controller.set(o.controller >= 0 ? 'node ' + o.controller : '–');
      topicCount.set(num(o.topics.length));
      records.set(num(recs));
      throughput.set(rate(hist.rate('cluster')), hist.spark(hist.values('cluster', true)));
      brokers.fill(o.brokers.map(b => ({...b, role: b.nodeId === o.controller ? 'controller, broker' : 'broker'})));
      if (o.quorum) {
        const q = o.quorum;
        quorumInfo.textContent = `leader ${q.leaderId}, epoch ${q.leaderEpoch}, high watermark ${num(q.highWatermark)}`;
        quorum.fill([
          ...q.voters.map(v => ({...v, role: v.replicaId === q.leaderId ? 'leader' : 'voter'})),
          ...q.observers.map(v => ({...v, role: 'observer'})),
        ]);
      } else {
        quorumInfo.textContent = o.quorumError || '';
        quorum.fill([]);
      }
      topics.fill(o.topics);
    },
  };
}
