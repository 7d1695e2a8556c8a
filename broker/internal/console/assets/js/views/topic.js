// One topic: partitions with offsets (and sizes when the cluster serves
// DescribeLogDirs), configs, and a record browser.

import {get, enc} from '../api.js';
import {h, table, card} from '../dom.js';
import {num, rate, bytes, time, fromBase64, decode} from '../format.js';
import * as hist from '../history.js';

export function mount(el, name) {
  const partCount = card('Partitions', 'partition-count');
  const recCount = card('Records', 'record-count');
  const produce = card('Produce rate', 'produce-rate');
  let withSizes = false;
  const partitions = table('partitions', [
    {title: 'Partition', num: true, cell: p => String(p.partition)},
    {title: 'Leader', num: true, cell: p => String(p.leader)},
    {title: 'Replicas', cell: p => (p.replicas || []).join(', ')},
    {title: 'In sync', cell: p => (p.isr || []).join(', ')},
    {title: 'Start offset', num: true, cell: p => num(p.startOffset)},
    {title: 'End offset', num: true, cell: p => num(p.endOffset)},
    {title: 'Records', num: true, cell: p => num(p.endOffset - p.startOffset)},
    {title: 'Size', num: true, cell: p => bytes(p.size), show: () => withSizes},
    {title: 'Error', cell: p => p.error ? h('span', {class: 'tag bad'}, p.error) : ''},
  ]);
  const configs = table('configs', [
    {title: 'Name', cell: c => c.name},
    {title: 'Value', cell: c => c.sensitive ? '(sensitive)' : (c.value ?? 'null')},
    {title: 'Source', cell: c => h('span', {class: c.source === 'DYNAMIC_TOPIC_CONFIG' ? 'tag' : 'muted'}, c.source)},
  ], 'no configs');
  const configsErr = h('p', {class: 'muted'});

  // The record browser.
  const partSel = h('select', {id: 'rec-partition'}, h('option', {value: 'all'}, 'all'));
  const fromSel = h('select', {id: 'rec-from'},
    h('option', {value: 'end'}, 'latest'), h('option', {value: 'offset'}, 'from offset'), h('option', {value: 'time'}, 'from time'));
  const offsetIn = h('input', {id: 'rec-offset', type: 'number', min: '0', value: '0', size: '8'});
  const timeIn = h('input', {id: 'rec-time', type: 'datetime-local', step: '1'});
  const limitIn = h('input', {id: 'rec-limit', type: 'number', min: '1', max: '500', value: '20', size: '5'});
  const formatSel = h('select', {id: 'rec-format'},
    ...['auto', 'text', 'json', 'hex'].map(f => h('option', {value: f}, f)));
  const liveIn = h('input', {id: 'rec-live', type: 'checkbox', checked: true});
  const recInfo = h('span', {class: 'muted', id: 'rec-info'});
  let recs = [];
  const fmt = b => h('pre', {}, decode(fromBase64(b), formatSel.value));
  const records = table('records', [
    {title: 'Partition', num: true, cell: r => String(r.partition)},
    {title: 'Offset', num: true, cell: r => String(r.offset)},
    {title: 'Timestamp (UTC)', cell: r => h('span', {title: r.timestampType}, time(r.timestamp))},
    {title: 'Key', cell: r => fmt(r.key)},
    {title: 'Value', cell: r => fmt(r.value)},
    {title: 'Headers', cell: r => r.headers.length === 0 ? '' :
      h('pre', {}, r.headers.map(x => `${x.key}: ${decode(fromBase64(x.value), formatSel.value)}`).join('\n'))},
  ], 'no records', r => r.partition + '/' + r.offset);

  async function loadRecords() {
    const q = new URLSearchParams({partition: partSel.value, from: fromSel.value, limit: limitIn.value || '20'});
    if (fromSel.value === 'offset') q.set('offset', offsetIn.value || '0');
    // The time field is UTC, like the timestamps shown.
    if (fromSel.value === 'time') q.set('time', String(timeIn.value ? new Date(timeIn.value + 'Z').getTime() : 0));
    const res = await get(`topics/${enc(name)}/records?${q}`);
    recs = fromSel.value === 'end' ? res.records.slice().reverse() : res.records;
    records.fill(recs);
    recInfo.textContent = `${recs.length} records` + (res.complete ? '' : ' (fewer than asked for: the read stopped at its time or size bound)');
  }
  const load = () => loadRecords().catch(err => { recInfo.textContent = err.message; });
  for (const c of [partSel, fromSel, offsetIn, timeIn, limitIn]) c.addEventListener('change', load);
  formatSel.addEventListener('change', () => records.fill(recs));

  el.append(
    h('h1', {}, name, h('small', {id: 'topic-id'})),
    h('div', {class: 'cards'}, partCount, recCount, produce),
    h('h2', {}, 'Partitions'), partitions,
    h('h2', {}, 'Records'),
    h('div', {class: 'controls'},
      h('label', {}, 'partition', partSel), h('label', {}, 'start', fromSel),
      h('label', {}, 'offset', offsetIn), h('label', {}, 'time (UTC)', timeIn),
      h('label', {}, 'limit', limitIn), h('label', {}, 'show as', formatSel),
      h('label', {}, liveIn, 'live'), h('button', {onclick: load}, 'Load'), recInfo),
    records,
    h('h2', {}, 'Configs'), configsErr, configs);

  let first = true;
  return {
    async refresh() {
      const t = await get('topics/' + enc(name));
      document.getElementById('topic-id').textContent = t.id;
      withSizes = t.partitions.some(p => p.size !== undefined);
      let end = 0, count = 0;
      for (const p of t.partitions) {
        if (p.endOffset >= 0) { end += p.endOffset; count += p.endOffset - p.startOffset; }
      }
      hist.sample('topic:' + name, t.time, end);
      partCount.set(String(t.partitions.length));
      recCount.set(num(count));
      produce.set(rate(hist.rate('topic:' + name)), hist.spark(hist.values('topic:' + name, true)));
      if (partSel.options.length !== t.partitions.length + 1) {
        partSel.replaceChildren(h('option', {value: 'all'}, 'all'),
          ...t.partitions.map(p => h('option', {value: String(p.partition)}, String(p.partition))));
      }
      partitions.fill(t.partitions);
      configsErr.textContent = t.configsError || '';
      configs.fill(t.configs || []);
      if (first || liveIn.checked) {
        first = false;
        await loadRecords();
      }
    },
  };
}
