package riffle.interop.bench;

import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Produced;

/**
 * Kafka Streams' side of the Riffle Streams / Kafka Streams word count
 * benchmark (internal/perf/streams_compare_test.go): the topology of
 * examples/wordcount (flatMapValues into words, groupBy word, count, to the
 * output topic as longs), run until SIGTERM.
 *
 * <p>Usage: {@code WordCountApp <bootstrap> <input> <output> <application id>
 * <state dir> <commit interval ms>}.
 *
 * <p>Settings: at_least_once, one stream thread, the given commit interval
 * (the benchmark passes Riffle Streams' default, 30 s, which is also Kafka
 * Streams' default under at_least_once), the record cache off
 * ({@code statestore.cache.max.bytes=0}, because Riffle Streams has no
 * record cache: both send every count update downstream), RocksDB stores
 * under the state directory, input read from the earliest offset.
 */
public final class WordCountApp {
  private WordCountApp() {}

  /**
   * Splits a line the way examples/wordcount's Words does: lower-cased,
   * split on every character that is not a letter or digit, empty pieces
   * dropped.
   */
  static List<String> words(String line) {
    return Arrays.stream(line.toLowerCase(Locale.ROOT).split("[^\\p{L}\\p{N}]+"))
        .filter(w -> !w.isEmpty())
        .toList();
  }

  static Topology topology(String input, String output) {
    StreamsBuilder b = new StreamsBuilder();
    b.<String, String>stream(input)
        .flatMapValues(WordCountApp::words)
        .groupBy((k, word) -> word)
        .count()
        .toStream()
        .to(output, Produced.with(Serdes.String(), Serdes.Long()));
    return b.build();
  }

  public static void main(String[] args) throws InterruptedException {
    if (args.length != 6) {
      System.err.println("usage: WordCountApp <bootstrap> <input> <output> <application id> <state dir> <commit interval ms>");
      System.exit(2);
    }
    Properties p = new Properties();
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[3]);
    p.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, args[5]);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    KafkaStreams streams = new KafkaStreams(topology(args[1], args[2]), p);
    CountDownLatch closed = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(30));
      closed.countDown();
    }));
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      Runtime.getRuntime().halt(1);
      return null;
    });
    streams.start();
    closed.await();
  }
}
