package riffle.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Assumptions;

/**
 * Riffle gives the tests the broker's address and the common client set-up.
 * The Go test interop/java_test.go starts a Riffle broker and passes its
 * address in RIFFLE_BOOTSTRAP; without it every test is skipped (so
 * {@code mvn test} alone only compiles and resolves dependencies).
 */
final class Riffle {
  private Riffle() {}

  /** Returns the broker's host:port, or skips the calling test. */
  static String bootstrap() {
    String addr = System.getenv("RIFFLE_BOOTSTRAP");
    Assumptions.assumeTrue(addr != null && !addr.isEmpty(),
        "RIFFLE_BOOTSTRAP unset: run these tests through interop/java_test.go");
    return addr;
  }

  /** Returns a topic or group name unique to this run. */
  static String unique(String prefix) {
    return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  static Properties adminProps() {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(AdminClientConfig.CLIENT_ID_CONFIG, "riffle-interop-admin");
    return p;
  }

  static Admin admin() {
    return Admin.create(adminProps());
  }

  static Properties producerProps() {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    return p;
  }

  static KafkaProducer<String, String> producer() {
    return new KafkaProducer<>(producerProps());
  }

  static Properties consumerProps(String group) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    if (group != null) {
      p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    }
    return p;
  }

  /** Creates topics with the given partition count and waits for them. */
  static void createTopics(Admin admin, int partitions, String... names)
      throws ExecutionException, InterruptedException {
    List<NewTopic> topics = new ArrayList<>();
    for (String n : names) {
      topics.add(new NewTopic(n, partitions, (short) 1));
    }
    admin.createTopics(topics).all().get();
  }

  /**
   * Reads the given partitions from the beginning with an unassigned
   * consumer until it has {@code want} records, and returns them in the
   * order received.
   */
  static List<ConsumerRecord<String, String>> readAll(Collection<TopicPartition> parts, int want) {
    List<ConsumerRecord<String, String>> out = new ArrayList<>();
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null))) {
      c.assign(parts);
      c.seekToBeginning(parts);
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (out.size() < want && System.nanoTime() < deadline) {
        c.poll(Duration.ofMillis(200)).forEach(out::add);
      }
      // One more short poll: anything beyond want is a duplicate or a stray.
      c.poll(Duration.ofMillis(200)).forEach(out::add);
    }
    assertEquals(want, out.size(), "records read back from " + parts);
    return out;
  }

  /** Waits up to timeout for cond, failing with msg if it never holds. */
  static void await(Duration timeout, String msg, BooleanSupplier cond) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!cond.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out after " + timeout + ": " + msg);
      }
      Thread.sleep(50);
    }
  }

  static List<TopicPartition> partitions(String topic, int n) {
    List<TopicPartition> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      out.add(new TopicPartition(topic, i));
    }
    return out;
  }
}
