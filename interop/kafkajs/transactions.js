// transactions.js drives kafkajs transactions against a broker: one
// transaction with records and the offsets of a consumer group commits,
// another aborts, and a read_committed consumer (kafkajs's default) reads
// the topic back. It prints one JSON object for the Go test.
//
// Usage: node transactions.js <host:port> <topic>
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [broker, topic] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: 'riffle-interop-txn', brokers: [broker], logLevel: logLevel.WARN, retry: { retries: 3 } });
  const result = {};
  const groupId = `${topic}-group`;

  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });

  const producer = kafka.producer({ transactionalId: `${topic}-txn`, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const committed = await producer.transaction();
  await committed.send({ topic, messages: [0, 1, 2].map((i) => ({ key: 'k', value: `committed-${i}` })) });
  await committed.sendOffsets({ consumerGroupId: groupId, topics: [{ topic, partitions: [{ partition: 0, offset: '2' }] }] });
  await committed.commit();
  const aborted = await producer.transaction();
  await aborted.send({ topic, messages: [{ key: 'k', value: 'aborted' }] });
  await aborted.sendOffsets({ consumerGroupId: groupId, topics: [{ topic, partitions: [{ partition: 0, offset: '99' }] }] });
  await aborted.abort();
  const last = await producer.transaction();
  await last.send({ topic, messages: [{ key: 'k', value: 'last' }] });
  await last.commit();
  await producer.disconnect();

  const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
  result.committedOffset = Number(offsets[0].partitions[0].offset);

  const consumer = kafka.consumer({ groupId: `${topic}-reader`, sessionTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const values = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${JSON.stringify(values)} before timeout`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        values.push(message.value.toString());
        if (values.includes('last')) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.stop();
  await consumer.disconnect();
  await admin.disconnect();
  result.values = values;
  console.log(JSON.stringify(result));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
