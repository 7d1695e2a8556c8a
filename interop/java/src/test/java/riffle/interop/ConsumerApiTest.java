package riffle.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static riffle.interop.Riffle.*;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** KafkaConsumer's positioning calls and the errors of out-of-range positions and oversized records. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ConsumerApiTest {

  /** Ten records on each of two partitions, record i at t0 + i seconds. */
  static long fill(String topic) throws Exception {
    long t0 = System.currentTimeMillis() - 3_600_000;
    try (Admin admin = admin()) {
      createTopics(admin, 2, topic);
    }
    try (KafkaProducer<String, String> p = producer()) {
      for (int part = 0; part < 2; part++) {
        for (int i = 0; i < 10; i++) {
          p.send(new ProducerRecord<>(topic, part, t0 + i * 1000L, "k", "p" + part + "-" + i));
        }
      }
    }
    return t0;
  }

  static List<ConsumerRecord<String, String>> pollSome(KafkaConsumer<String, String> c, int want) throws InterruptedException {
    List<ConsumerRecord<String, String>> out = new ArrayList<>();
    await(Duration.ofSeconds(20), "consumer never got " + want + " records", () -> {
      c.poll(Duration.ofMillis(100)).forEach(out::add);
      return out.size() >= want;
    });
    return out;
  }

  @Test
  void positioning() throws Exception {
    String topic = unique("consumer-api");
    long t0 = fill(topic);
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);
    Properties props = consumerProps(null);
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props)) {
      assertEquals(2, c.partitionsFor(topic).size());
      assertEquals(Map.of(p0, 0L, p1, 0L), c.beginningOffsets(List.of(p0, p1)));
      assertEquals(Map.of(p0, 10L, p1, 10L), c.endOffsets(List.of(p0, p1)), "read_committed end offsets of plain records");
      Map<TopicPartition, OffsetAndTimestamp> byTime = c.offsetsForTimes(Map.of(p0, t0 + 5000, p1, t0 + 99_000));
      assertEquals(5, byTime.get(p0).offset());
      assertEquals(t0 + 5000, byTime.get(p0).timestamp());
      assertNull(byTime.get(p1), "no record that late");

      c.assign(List.of(p0, p1));
      c.seek(p0, 7);
      c.seek(p1, 9);
      c.pause(List.of(p1));
      List<ConsumerRecord<String, String>> got = pollSome(c, 3);
      assertEquals(List.of("p0-7", "p0-8", "p0-9"), got.stream().map(ConsumerRecord::value).toList(), "paused partition stays quiet");
      assertEquals(10, c.position(p0));
      c.resume(List.of(p1));
      got = pollSome(c, 1);
      assertEquals(List.of("p1-9"), got.stream().map(ConsumerRecord::value).toList());
    }
  }

  @Test
  void outOfRangePositions() throws Exception {
    String topic = unique("consumer-range");
    fill(topic);
    TopicPartition p0 = new TopicPartition(topic, 0);
    try (Admin admin = admin()) {
      admin.deleteRecords(Map.of(p0, RecordsToDelete.beforeOffset(5))).all().get();
    }
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null))) {
      c.assign(List.of(p0));
      c.seek(p0, 2);
      List<ConsumerRecord<String, String>> got = pollSome(c, 5);
      assertEquals(5, got.get(0).offset(), "auto.offset.reset=earliest moves a deleted position to the log start");
    }
    Properties none = consumerProps(null);
    none.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(none)) {
      c.assign(List.of(p0));
      c.seek(p0, 2);
      OffsetOutOfRangeException e = assertThrows(OffsetOutOfRangeException.class, () -> {
        for (int i = 0; i < 100; i++) {
          c.poll(Duration.ofMillis(100));
        }
      });
      assertEquals(Map.of(p0, 2L), e.offsetOutOfRangePartitions());
      c.seek(p0, 25);
      assertThrows(OffsetOutOfRangeException.class, () -> {
        for (int i = 0; i < 100; i++) {
          c.poll(Duration.ofMillis(100));
        }
      }, "a position past the log end");
    }
  }

  @Test
  void recordTooLarge() throws Exception {
    String topic = unique("too-large");
    try (Admin admin = admin()) {
      admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1).configs(Map.of("max.message.bytes", "1000")))).all().get();
    }
    try (KafkaProducer<String, String> p = producer()) {
      ExecutionException e = assertThrows(ExecutionException.class, () -> p.send(new ProducerRecord<>(topic, "k", "x".repeat(5000))).get());
      assertInstanceOf(RecordTooLargeException.class, e.getCause());
      assertTrue(p.send(new ProducerRecord<>(topic, "k", "small")).get().offset() >= 0, "a small record still goes through");
    }
  }
}
