package riffle.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static riffle.interop.Riffle.*;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.TransactionState;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Transactional KafkaProducers against Riffle's transaction coordinator, read back read_committed. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class TransactionsTest {

  private static KafkaProducer<String, String> transactional(String id) {
    Properties props = producerProps();
    props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
    return new KafkaProducer<>(props);
  }

  /** Reads the partition from the start for a while, read_committed. */
  private static List<String> readCommitted(TopicPartition tp) {
    Properties cp = consumerProps(null);
    cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    List<String> got = new ArrayList<>();
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
      c.assign(List.of(tp));
      c.seekToBeginning(List.of(tp));
      long end = System.nanoTime() + Duration.ofSeconds(3).toNanos();
      while (System.nanoTime() < end) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          got.add(r.value());
        }
      }
    }
    return got;
  }

  @Test
  void commitAbortAndOffsetsInTransaction() throws Exception {
    String topic = unique("txn");
    String group = unique("g-txn");
    TopicPartition tp = new TopicPartition(topic, 0);
    try (Admin admin = admin()) {
      createTopics(admin, 1, topic);
    }
    try (KafkaProducer<String, String> p = transactional(unique("txn-id"))) {
      p.initTransactions();
      p.beginTransaction();
      for (int i = 0; i < 5; i++) {
        p.send(new ProducerRecord<>(topic, 0, "k", "committed-" + i));
      }
      p.sendOffsetsToTransaction(Map.of(tp, new OffsetAndMetadata(3)), new ConsumerGroupMetadata(group));
      p.commitTransaction();
      p.beginTransaction();
      p.send(new ProducerRecord<>(topic, 0, "k", "aborted"));
      p.sendOffsetsToTransaction(Map.of(tp, new OffsetAndMetadata(99)), new ConsumerGroupMetadata(group));
      p.flush();
      p.abortTransaction();
    }
    assertEquals(List.of("committed-0", "committed-1", "committed-2", "committed-3", "committed-4"), readCommitted(tp));
    try (Admin admin = admin()) {
      assertEquals(3, admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get().get(tp).offset());
    }
  }

  /** A second producer with the same transactional id fences the first, whose open transaction is aborted. */
  @Test
  void zombieIsFenced() throws Exception {
    String topic = unique("txn-fence");
    String id = unique("txn-fence-id");
    TopicPartition tp = new TopicPartition(topic, 0);
    try (Admin admin = admin()) {
      createTopics(admin, 1, topic);
    }
    try (KafkaProducer<String, String> zombie = transactional(id);
        KafkaProducer<String, String> successor = transactional(id)) {
      zombie.initTransactions();
      zombie.beginTransaction();
      zombie.send(new ProducerRecord<>(topic, 0, "k", "zombie")).get();
      successor.initTransactions();
      successor.beginTransaction();
      successor.send(new ProducerRecord<>(topic, 0, "k", "successor"));
      successor.commitTransaction();
      assertThrows(ProducerFencedException.class, zombie::commitTransaction);
    }
    assertEquals(List.of("successor"), readCommitted(tp));
  }

  /** describeTransactions, listTransactions and describeProducers see an open transaction. */
  @Test
  void adminSeesOpenTransaction() throws Exception {
    String topic = unique("txn-admin");
    String id = unique("txn-admin-id");
    TopicPartition tp = new TopicPartition(topic, 0);
    try (Admin admin = admin()) {
      createTopics(admin, 1, topic);
      try (KafkaProducer<String, String> p = transactional(id)) {
        p.initTransactions();
        p.beginTransaction();
        p.send(new ProducerRecord<>(topic, 0, "k", "open")).get();

        TransactionDescription d = admin.describeTransactions(List.of(id)).description(id).get();
        assertEquals(TransactionState.ONGOING, d.state());
        assertEquals(List.of(tp), new ArrayList<>(d.topicPartitions()));
        assertTrue(d.transactionStartTimeMs().isPresent(), "start time");

        List<String> ongoing = admin.listTransactions().all().get().stream()
            .filter(l -> l.state() == TransactionState.ONGOING)
            .map(TransactionListing::transactionalId).collect(Collectors.toList());
        assertTrue(ongoing.contains(id), "listTransactions: " + ongoing);

        List<ProducerState> producers = admin.describeProducers(List.of(tp)).partitionResult(tp).get().activeProducers();
        assertEquals(1, producers.size(), producers.toString());
        assertEquals(d.producerId(), producers.get(0).producerId());
        assertEquals(0L, producers.get(0).currentTransactionStartOffset().getAsLong());
        p.commitTransaction();
        TransactionDescription done = admin.describeTransactions(List.of(id)).description(id).get();
        assertEquals(TransactionState.COMPLETE_COMMIT, done.state());
        // Transaction version 2 (KIP-890 part 2), which the producer took
        // from ApiVersions, bumps the epoch at the commit.
        assertEquals(d.producerEpoch() + 1, done.producerEpoch(), "epoch after the commit");
      }
    }
  }
}
