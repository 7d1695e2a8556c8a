"""Drives librdkafka transactions (confluent-kafka-python) against a broker.

One transaction with records and the offsets of a consumer group commits,
another aborts, a third commits; a read_committed consumer reads the topic
back. Prints one JSON object for the Go test.

Usage: python3 transactions.py <host:port> <topic>
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    broker, topic = sys.argv[1], sys.argv[2]
    group = topic + "-group"
    admin = AdminClient({"bootstrap.servers": broker})
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        f.result(30)

    p = Producer({"bootstrap.servers": broker, "transactional.id": topic + "-txn"})
    p.init_transactions(30)
    # The group's metadata, as a consumer of the group would hand it over.
    c = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    meta = c.consumer_group_metadata()

    p.begin_transaction()
    for i in range(3):
        p.produce(topic, key="k", value="committed-%d" % i, partition=0)
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 2)], meta, 30)
    p.commit_transaction(30)

    p.begin_transaction()
    p.produce(topic, key="k", value="aborted", partition=0)
    p.send_offsets_to_transaction([TopicPartition(topic, 0, 99)], meta, 30)
    p.flush(30)
    p.abort_transaction(30)

    p.begin_transaction()
    p.produce(topic, key="k", value="last", partition=0)
    p.commit_transaction(30)

    committed = c.committed([TopicPartition(topic, 0)], 30)[0].offset
    c.close()

    reader = Consumer({"bootstrap.servers": broker, "group.id": topic + "-reader",
                       "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    reader.assign([TopicPartition(topic, 0, 0)])
    values = []
    deadline = time.time() + 30
    while "last" not in values and time.time() < deadline:
        m = reader.poll(0.5)
        if m is not None and m.error() is None:
            values.append(m.value().decode())
    reader.close()
    print(json.dumps({"committedOffset": committed, "values": values}))


if __name__ == "__main__":
    main()
