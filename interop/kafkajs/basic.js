// basic.js drives kafkajs against a broker: create a topic, produce keyed
// messages, consume them in a consumer group that commits, and read the
// committed offsets back. It prints one JSON object for the Go test.
//
// Usage: node basic.js <host:port> <topic> <count>
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [broker, topic, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  const kafka = new Kafka({ clientId: 'riffle-interop', brokers: [broker], logLevel: logLevel.WARN, retry: { retries: 3 } });
  const result = {};

  const admin = kafka.admin();
  await admin.connect();
  result.created = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  result.partitions = meta.topics[0].partitions.length;
  result.listed = (await admin.listTopics()).includes(topic);

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ key: `k${i}`, value: `v${i}` });
  const sent = await producer.send({ topic, acks: -1, messages });
  result.produced = sent.reduce((n, r) => n + (r.errorCode === 0 ? 1 : 0), 0) > 0 ? count : 0;
  await producer.disconnect();

  const groupId = `${topic}-group`;
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumed ${seen.size} of ${count} before timeout`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(`${message.key}=${message.value}`);
        if (seen.size >= count) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.stop();
  await consumer.disconnect();
  result.consumed = seen.size;
  result.consumedAll = [...Array(count).keys()].every((i) => seen.has(`k${i}=v${i}`));

  const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
  result.committed = offsets[0].partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
  await admin.disconnect();
  console.log(JSON.stringify(result));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
