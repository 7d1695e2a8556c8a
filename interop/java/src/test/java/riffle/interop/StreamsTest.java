package riffle.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static riffle.interop.Riffle.*;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.CloseOptions.GroupMembershipOperation;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.junit.jupiter.api.Disabled;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Kafka Streams applications on Riffle's broker, their output checked
 * exactly. With the record cache off every input record yields one update
 * downstream, so a count's output for a key is exactly 1, 2, ... n in
 * order, and a join's output is exactly one record per matching input.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class StreamsTest {
  @TempDir Path stateDir;

  Properties streamsProps(String appId, String guarantee) {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "100");
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
    p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    return p;
  }

  /** Starts the topology and waits until it is RUNNING. */
  static KafkaStreams start(Topology top, Properties props) throws InterruptedException {
    KafkaStreams s = new KafkaStreams(top, props);
    s.start();
    await(Duration.ofSeconds(60), "Kafka Streams never reached RUNNING (state " + s.state() + ")",
        () -> s.state() == KafkaStreams.State.RUNNING);
    return s;
  }

  /** Reads want records of String keys and values of type V from the start of topic. */
  static <V> List<KeyValue<String, V>> readOutput(String topic, Class<?> valueDeserializer, int want) {
    Properties p = consumerProps(null);
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, valueDeserializer.getName());
    List<KeyValue<String, V>> out = new ArrayList<>();
    try (KafkaConsumer<String, V> c = new KafkaConsumer<>(p)) {
      List<TopicPartition> parts = new ArrayList<>();
      long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
      while (parts.isEmpty() && System.nanoTime() < deadline) {
        c.partitionsFor(topic).forEach(pi -> parts.add(new TopicPartition(topic, pi.partition())));
      }
      c.assign(parts);
      c.seekToBeginning(parts);
      while (out.size() < want && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, V> r : c.poll(Duration.ofMillis(200))) {
          out.add(KeyValue.pair(r.key(), r.value()));
        }
      }
      for (ConsumerRecord<String, V> r : c.poll(Duration.ofMillis(500))) {
        out.add(KeyValue.pair(r.key(), r.value()));
      }
    }
    assertEquals(want, out.size(), "records in " + topic + ": " + out);
    return out;
  }

  /** Groups the output by key, keeping each key's values in order. */
  static <V> Map<String, List<V>> byKey(List<KeyValue<String, V>> out) {
    Map<String, List<V>> m = new TreeMap<>();
    out.forEach(kv -> m.computeIfAbsent(kv.key, k -> new ArrayList<>()).add(kv.value));
    return m;
  }

  /** Each key's expected sequence of counts, 1 to its number of occurrences. */
  static Map<String, List<Long>> counting(Map<String, Integer> occurrences) {
    Map<String, List<Long>> m = new TreeMap<>();
    occurrences.forEach((k, n) -> {
      List<Long> seq = new ArrayList<>();
      for (long i = 1; i <= n; i++) {
        seq.add(i);
      }
      m.put(k, seq);
    });
    return m;
  }

  static final String[] LINES = {
    "the quick brown fox", "jumps over the lazy dog", "the dog barks",
    "a fox is quick", "lazy lazy dog", "over and over and over",
  };

  Topology wordCount(String in, String out) {
    StreamsBuilder b = new StreamsBuilder();
    b.<String, String>stream(in)
        .flatMapValues(line -> List.of(line.toLowerCase().split("\\W+")))
        .groupBy((k, word) -> word)
        .count()
        .toStream()
        .to(out, Produced.with(Serdes.String(), Serdes.Long()));
    return b.build();
  }

  void runWordCount(String guarantee) throws Exception {
    String in = unique("wc-in");
    String out = unique("wc-out");
    String app = unique("wc-app");
    try (Admin admin = admin()) {
      createTopics(admin, 2, in, out);
    }
    final int rounds = 20;
    Map<String, Integer> occurrences = new HashMap<>();
    try (KafkaStreams s = start(wordCount(in, out), streamsProps(app, guarantee));
        KafkaProducer<String, String> p = producer()) {
      int n = 0;
      for (int r = 0; r < rounds; r++) {
        for (String line : LINES) {
          p.send(new ProducerRecord<>(in, "line" + (n++), line));
          for (String w : line.split(" ")) {
            occurrences.merge(w, 1, Integer::sum);
          }
        }
      }
      p.flush();
      int updates = occurrences.values().stream().mapToInt(Integer::intValue).sum();
      List<KeyValue<String, Long>> got = readOutput(out, LongDeserializer.class, updates);
      assertEquals(counting(occurrences), byKey(got), "word count updates per word");
      s.close(Duration.ofSeconds(30));
    }
    try (Admin admin = admin()) {
      Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(app).partitionsToOffsetAndMetadata().get();
      long inputCommitted = committed.entrySet().stream().filter(e -> e.getKey().topic().equals(in))
          .mapToLong(e -> e.getValue().offset()).sum();
      assertEquals(rounds * LINES.length, inputCommitted, "the application committed all of its input: " + committed);
    }
  }

  @Test
  void wordCountAtLeastOnce() throws Exception {
    runWordCount(StreamsConfig.AT_LEAST_ONCE);
  }

  @Test
  void wordCountExactlyOnceV2() throws Exception {
    runWordCount(StreamsConfig.EXACTLY_ONCE_V2);
  }

  @Test
  @Disabled("known difference: Riffle does not serve the streams rebalance protocol (KIP-1071: StreamsGroupHeartbeat, "
      + "StreamsGroupDescribe): Kafka Streams with group.protocol=streams fails with UnsupportedVersionException "
      + "'The cluster does not support the STREAMS group protocol'; it runs with group.protocol=classic, its default")
  void wordCountStreamsProtocol() throws Exception {
    String in = unique("wcs-in");
    String out = unique("wcs-out");
    try (Admin admin = admin()) {
      createTopics(admin, 1, in, out);
    }
    Properties props = streamsProps(unique("wcs-app"), StreamsConfig.AT_LEAST_ONCE);
    props.put(StreamsConfig.GROUP_PROTOCOL_CONFIG, "streams");
    try (KafkaStreams s = start(wordCount(in, out), props);
        KafkaProducer<String, String> p = producer()) {
      p.send(new ProducerRecord<>(in, "l", "a b a"));
      p.flush();
      assertEquals(Map.of("a", List.of(1L, 2L), "b", List.of(1L)), byKey(readOutput(out, LongDeserializer.class, 3)));
    }
  }

  /**
   * A WordCount instance stops and a new one, with an empty state
   * directory, restores the counts from the changelog topic on Riffle and
   * carries on from them.
   */
  @Test
  void wordCountRestoresFromChangelog(@TempDir Path secondStateDir) throws Exception {
    String in = unique("wcr-in");
    String out = unique("wcr-out");
    String app = unique("wcr-app");
    try (Admin admin = admin()) {
      createTopics(admin, 2, in, out);
    }
    Map<String, Integer> first = new HashMap<>();
    try (KafkaStreams s = start(wordCount(in, out), streamsProps(app, StreamsConfig.AT_LEAST_ONCE));
        KafkaProducer<String, String> p = producer()) {
      for (int i = 0; i < LINES.length; i++) {
        p.send(new ProducerRecord<>(in, "line" + i, LINES[i]));
        for (String w : LINES[i].split(" ")) {
          first.merge(w, 1, Integer::sum);
        }
      }
      p.flush();
      int updates = first.values().stream().mapToInt(Integer::intValue).sum();
      assertEquals(counting(first), byKey(readOutput(out, LongDeserializer.class, updates)));
      // Leave the group, so the next instance need not wait out this one's session.
      s.close(CloseOptions.timeout(Duration.ofSeconds(30)).withGroupMembershipOperation(GroupMembershipOperation.LEAVE_GROUP));
    }

    Properties props = streamsProps(app, StreamsConfig.AT_LEAST_ONCE);
    props.put(StreamsConfig.STATE_DIR_CONFIG, secondStateDir.toString());
    Map<String, Integer> all = new HashMap<>(first);
    try (KafkaStreams s = start(wordCount(in, out), props);
        KafkaProducer<String, String> p = producer()) {
      p.send(new ProducerRecord<>(in, "again", "the fox and the dog"));
      p.flush();
      for (String w : "the fox and the dog".split(" ")) {
        all.merge(w, 1, Integer::sum);
      }
      int updates = all.values().stream().mapToInt(Integer::intValue).sum();
      assertEquals(counting(all), byKey(readOutput(out, LongDeserializer.class, updates)),
          "counts after the restore continue from the first instance's");
    }
  }

  @Test
  void tumblingWindowCount() throws Exception {
    String in = unique("win-in");
    String out = unique("win-out");
    String app = unique("win-app");
    try (Admin admin = admin()) {
      createTopics(admin, 2, in, out);
    }
    StreamsBuilder b = new StreamsBuilder();
    b.<String, String>stream(in)
        .groupByKey()
        .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofSeconds(10)))
        .count()
        .toStream((wk, v) -> wk.key() + "@" + wk.window().start())
        .to(out, Produced.with(Serdes.String(), Serdes.Long()));

    long base = (System.currentTimeMillis() / 10_000 - 100) * 10_000; // a window boundary in the past
    // Each sensor reports every 3 s for 60 s: windows [0,10) get 4, 3, 3, 4, 3, 3 records.
    Map<String, Integer> occurrences = new LinkedHashMap<>();
    try (KafkaStreams s = start(b.build(), streamsProps(app, StreamsConfig.AT_LEAST_ONCE));
        KafkaProducer<String, String> p = producer()) {
      for (long t = 0; t < 60_000; t += 3000) {
        for (String sensor : List.of("s1", "s2", "s3")) {
          p.send(new ProducerRecord<>(in, null, base + t, sensor, "reading"));
          occurrences.merge(sensor + "@" + (base + t / 10_000 * 10_000), 1, Integer::sum);
        }
      }
      p.flush();
      int updates = occurrences.values().stream().mapToInt(Integer::intValue).sum();
      List<KeyValue<String, Long>> got = readOutput(out, LongDeserializer.class, updates);
      assertEquals(counting(occurrences), byKey(got), "windowed count updates per sensor and window");
      assertEquals(18, occurrences.size(), "three sensors over six windows");
    }
  }

  @Test
  void streamTableJoin() throws Exception {
    String users = unique("join-users");
    String clicks = unique("join-clicks");
    String out = unique("join-out");
    String app = unique("join-app");
    try (Admin admin = admin()) {
      createTopics(admin, 3, users, clicks, out);
    }
    long t0 = System.currentTimeMillis() - 60_000;
    try (KafkaProducer<String, String> p = producer()) {
      p.send(new ProducerRecord<>(users, null, t0, "u1", "ada"));
      p.send(new ProducerRecord<>(users, null, t0, "u2", "grace"));
      p.send(new ProducerRecord<>(users, null, t0, "u3", "edsger"));
      p.send(new ProducerRecord<>(users, null, t0 + 20_000, "u2", "grace hopper"));
      p.flush();
    }
    StreamsBuilder b = new StreamsBuilder();
    KTable<String, String> table = b.table(users, Consumed.with(Serdes.String(), Serdes.String()));
    KStream<String, String> stream = b.stream(clicks, Consumed.with(Serdes.String(), Serdes.String()));
    stream.join(table, (page, name) -> name + " viewed " + page).to(out);

    List<String[]> sent = List.of(
        new String[] {"u1", "home", "10000"},
        new String[] {"u2", "docs", "10000"},
        new String[] {"u9", "nobody", "10000"}, // no such user: an inner join drops it
        new String[] {"u3", "blog", "15000"},
        new String[] {"u2", "api", "30000"},   // after grace's rename at t0+20s
        new String[] {"u1", "about", "30000"});
    Properties props = streamsProps(app, StreamsConfig.AT_LEAST_ONCE);
    props.put(StreamsConfig.MAX_TASK_IDLE_MS_CONFIG, "1000");
    try (KafkaStreams s = start(b.build(), props);
        KafkaProducer<String, String> p = producer()) {
      for (String[] c : sent) {
        p.send(new ProducerRecord<>(clicks, null, t0 + Long.parseLong(c[2]), c[0], c[1]));
      }
      p.flush();
      List<KeyValue<String, String>> got = readOutput(out, StringDeserializer.class, 5);
      Map<String, List<String>> want = new TreeMap<>(Map.of(
          "u1", List.of("ada viewed home", "ada viewed about"),
          "u2", List.of("grace viewed docs", "grace hopper viewed api"),
          "u3", List.of("edsger viewed blog")));
      assertEquals(want, byKey(got), "joined clicks per user");
    }
  }
}
