package riffle.interop;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static riffle.interop.Riffle.*;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.record.TimestampType;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** KafkaProducer, idempotent with acks=all, with each compression codec. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ProducerTest {
  static final int PARTITIONS = 3;
  static final int RECORDS = 3000;

  @ParameterizedTest(name = "compression.type={0}")
  @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
  void idempotentProduceEveryCodec(String codec) throws Exception {
    String topic = unique("produce-" + codec);
    try (Admin admin = admin()) {
      createTopics(admin, PARTITIONS, topic);
    }
    Properties props = producerProps();
    props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
    props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    props.put(ProducerConfig.BATCH_SIZE_CONFIG, "16384");
    props.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");

    long t0 = System.currentTimeMillis();
    List<Future<RecordMetadata>> acks = new ArrayList<>();
    try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
      for (int i = 0; i < RECORDS; i++) {
        ProducerRecord<String, String> r = new ProducerRecord<>(topic, i % PARTITIONS, t0 + i, "k" + i, value(i));
        r.headers().add("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
        acks.add(p.send(r));
      }
      p.flush();
    }
    Map<Integer, Long> next = new HashMap<>();
    for (int i = 0; i < RECORDS; i++) {
      RecordMetadata md = acks.get(i).get();
      assertEquals(i % PARTITIONS, md.partition(), "partition of record " + i);
      long want = next.getOrDefault(md.partition(), 0L);
      assertEquals(want, md.offset(), "offset of record " + i + " (records keep their send order)");
      next.put(md.partition(), want + 1);
      assertEquals(t0 + i, md.timestamp(), "timestamp of record " + i);
    }

    List<ConsumerRecord<String, String>> got = readAll(partitions(topic, PARTITIONS), RECORDS);
    Map<Integer, Long> seen = new HashMap<>();
    for (ConsumerRecord<String, String> r : got) {
      long off = seen.getOrDefault(r.partition(), 0L);
      assertEquals(off, r.offset(), "offsets of partition " + r.partition() + " are dense");
      seen.put(r.partition(), off + 1);
      int i = (int) (off * PARTITIONS + r.partition());
      assertEquals("k" + i, r.key());
      assertEquals(value(i), r.value());
      assertEquals(t0 + i, r.timestamp());
      assertEquals(TimestampType.CREATE_TIME, r.timestampType());
      Header[] hs = r.headers().toArray();
      assertEquals(1, hs.length, "headers of record " + i);
      assertEquals("seq", hs[0].key());
      assertArrayEquals(Integer.toString(i).getBytes(StandardCharsets.UTF_8), hs[0].value());
    }
    for (int p = 0; p < PARTITIONS; p++) {
      assertEquals(RECORDS / PARTITIONS, seen.get(p), "records in partition " + p);
    }
  }

  /** A compressible value of varying length. */
  static String value(int i) {
    return "value-" + i + "-" + "abcdefghij".repeat(i % 20);
  }
}
