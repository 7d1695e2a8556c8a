package riffle.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static riffle.interop.Riffle.*;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * KafkaConsumer in groups: the classic protocol with the client-side range
 * and cooperative-sticky assignors, and the consumer protocol (KIP-848)
 * with the broker's uniform and range assignors, including a member that
 * joins while records flow.
 */
@Timeout(value = 90, unit = TimeUnit.SECONDS)
class ConsumerGroupTest {
  static final int PARTITIONS = 4;
  static final int PER_PARTITION = 100;

  /** Member is one group consumer polled from the test's thread. */
  static final class Member implements ConsumerRebalanceListener, AutoCloseable {
    final KafkaConsumer<String, String> consumer;
    final List<ConsumerRecord<String, String>> records = new ArrayList<>();
    final List<Set<Integer>> revoked = new CopyOnWriteArrayList<>();
    final AtomicInteger lost = new AtomicInteger();
    /** Values read since the last commit that succeeded. */
    final List<String> pending = new ArrayList<>();
    /** Values whose commit the broker refused, shared between members; null to fail on a refusal. */
    Set<String> uncommitted;
    /** The offset last read from each partition. */
    final Map<Integer, Long> lastRead = new HashMap<>();

    Member(Properties props, String topic) {
      consumer = new KafkaConsumer<>(props);
      consumer.subscribe(List.of(topic), this);
    }

    void poll() {
      consumer.poll(Duration.ofMillis(100)).forEach(records::add);
    }

    Set<Integer> assignment() {
      return consumer.assignment().stream().map(TopicPartition::partition).collect(Collectors.toCollection(TreeSet::new));
    }

    /**
     * Commits what has been read. A refused commit fails the test unless
     * uncommitted is set, in which case the values read since the last
     * good commit go there: another member may read them again.
     */
    void commit() {
      try {
        consumer.commitSync();
      } catch (CommitFailedException e) {
        if (uncommitted == null) {
          throw e;
        }
        uncommitted.addAll(pending);
      }
      pending.clear();
    }

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> parts) {
      if (!parts.isEmpty()) {
        commit();
        revoked.add(parts.stream().map(TopicPartition::partition).collect(Collectors.toSet()));
      }
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> parts) {
      // A partition that comes back may start below where it was left.
      parts.forEach(tp -> lastRead.remove(tp.partition()));
    }

    @Override
    public void onPartitionsLost(Collection<TopicPartition> parts) {
      lost.incrementAndGet();
    }

    /**
     * Closes the consumer. Its last commit, from the revocation callback,
     * may be refused, as Kafka refuses it too, once the revocation has
     * completed or the member was fenced; the tests check the commits made
     * before closing.
     */
    @Override
    public void close() {
      if (uncommitted == null) {
        uncommitted = new HashSet<>();
      }
      consumer.close();
    }
  }

  static Properties classic(String group, String assignor) {
    Properties p = consumerProps(group);
    p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor);
    p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
    return p;
  }

  static Properties kip848(String group, String assignor) {
    Properties p = consumerProps(group);
    p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
    p.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, assignor);
    return p;
  }

  /** Makes the broker ask the group's consumer-protocol members to heartbeat every 500 ms. */
  static void fastHeartbeats(Admin admin, String group) throws Exception {
    ConfigResource res = new ConfigResource(ConfigResource.Type.GROUP, group);
    AlterConfigOp op = new AlterConfigOp(new ConfigEntry("consumer.heartbeat.interval.ms", "500"), AlterConfigOp.OpType.SET);
    admin.incrementalAlterConfigs(Map.of(res, List.of(op))).all().get();
  }

  static void produce(String topic, int perPartition, int partitions) throws Exception {
    try (KafkaProducer<String, String> p = producer()) {
      for (int i = 0; i < perPartition; i++) {
        for (int part = 0; part < partitions; part++) {
          p.send(new ProducerRecord<>(topic, part, "p" + part, "p" + part + "-" + i));
        }
      }
      p.flush();
    }
  }

  /** Polls both members until each holds two partitions and they cover all four. */
  static void awaitBalanced(Member a, Member b) throws InterruptedException {
    long deadline = System.nanoTime() + Duration.ofSeconds(40).toNanos();
    while (true) {
      a.poll();
      b.poll();
      Set<Integer> all = new TreeSet<>(a.assignment());
      all.addAll(b.assignment());
      if (a.assignment().size() == 2 && b.assignment().size() == 2 && all.size() == PARTITIONS) {
        return;
      }
      if (System.nanoTime() > deadline) {
        throw new AssertionError("group never balanced: " + a.assignment() + " and " + b.assignment());
      }
    }
  }

  /**
   * Runs two members of one group over a four-partition topic: the first
   * joins alone and takes every partition, the second joins, they balance
   * (into wantAssignments if it is not null; with cooperative, the first
   * member gives up exactly the partitions the second gets), then they
   * read 400 records, commit, and the committed offsets are read back both
   * through a consumer and through Admin.
   */
  void twoMembers(Properties props, String topic, String group, Set<Set<Integer>> wantAssignments, boolean cooperative)
      throws Exception {
    try (Admin admin = admin()) {
      createTopics(admin, PARTITIONS, topic);
      try (Member a = new Member(props, topic)) {
        await(Duration.ofSeconds(30), "first member never got all partitions", () -> {
          a.poll();
          return a.assignment().size() == PARTITIONS;
        });
        try (Member b = new Member(props, topic)) {
          awaitBalanced(a, b);
          if (wantAssignments != null) {
            assertEquals(wantAssignments, Set.of(a.assignment(), b.assignment()), "assignments");
          }
          assertEquals(0, a.lost.get() + b.lost.get(), "partitions lost");
          if (cooperative) {
            Set<Integer> moved = new HashSet<>();
            a.revoked.forEach(moved::addAll);
            assertEquals(b.assignment(), moved, "cooperative rebalance revokes only the partitions that move");
          }
          assertTrue(a.records.isEmpty() && b.records.isEmpty(), "nothing produced yet");

          produce(topic, PER_PARTITION, PARTITIONS);
          await(Duration.ofSeconds(30), "members never read every record", () -> {
            a.poll();
            b.poll();
            return a.records.size() + b.records.size() >= PARTITIONS * PER_PARTITION;
          });
          a.poll();
          b.poll();
          for (Member m : List.of(a, b)) {
            Map<Integer, List<String>> byPart = new HashMap<>();
            for (ConsumerRecord<String, String> r : m.records) {
              assertTrue(m.assignment().contains(r.partition()), "record from an unassigned partition " + r.partition());
              byPart.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.value());
            }
            for (int part : m.assignment()) {
              List<String> want = new ArrayList<>();
              for (int i = 0; i < PER_PARTITION; i++) {
                want.add("p" + part + "-" + i);
              }
              assertEquals(want, byPart.get(part), "records of partition " + part);
            }
            m.consumer.commitSync();
          }
          Map<TopicPartition, OffsetAndMetadata> committed = a.consumer.committed(new HashSet<>(partitions(topic, PARTITIONS)));
          for (TopicPartition tp : partitions(topic, PARTITIONS)) {
            assertEquals(PER_PARTITION, committed.get(tp).offset(), "committed offset of " + tp);
          }
        }
      }
      Map<TopicPartition, OffsetAndMetadata> listed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
      assertEquals(PARTITIONS, listed.size(), "Admin lists the group's committed partitions: " + listed);
      for (TopicPartition tp : partitions(topic, PARTITIONS)) {
        assertEquals(PER_PARTITION, listed.get(tp).offset(), "Admin's committed offset of " + tp);
      }
    }
  }

  @Test
  void classicRange() throws Exception {
    String topic = unique("classic-range");
    String group = unique("g-classic-range");
    twoMembers(classic(group, RangeAssignor.class.getName()), topic, group, Set.of(Set.of(0, 1), Set.of(2, 3)), false);
  }

  @Test
  void classicCooperativeSticky() throws Exception {
    String topic = unique("classic-coop");
    String group = unique("g-classic-coop");
    twoMembers(classic(group, CooperativeStickyAssignor.class.getName()), topic, group, null, true);
  }

  @ParameterizedTest(name = "group.remote.assignor={0}")
  @ValueSource(strings = {"uniform", "range"})
  void consumerProtocol(String assignor) throws Exception {
    String topic = unique("kip848-" + assignor);
    String group = unique("g-kip848-" + assignor);
    try (Admin admin = admin()) {
      fastHeartbeats(admin, group);
    }
    Set<Set<Integer>> want = assignor.equals("range") ? Set.of(Set.of(0, 1), Set.of(2, 3)) : null;
    twoMembers(kip848(group, assignor), topic, group, want, true);
  }

  /**
   * A second consumer-protocol member joins while a producer is writing
   * and the first member is reading. Each member commits after every poll
   * and when partitions are revoked, so every record is read at least
   * once, each partition in offset order, a record is read twice only if
   * the commit covering its first read was refused, and the group ends
   * with its committed offsets at the log end.
   *
   * <p>A commit at an older member epoch is accepted for partitions held
   * since that epoch (KIP-1251, assignment epochs), as Kafka 4.4 does; one
   * for a partition already revoked is refused with STALE_MEMBER_EPOCH,
   * which the Java consumer reports as CommitFailedException, so records
   * read just before such a revocation may be read again by the new owner.
   */
  @Test
  void consumerProtocolScaleOutUnderLoad() throws Exception {
    final int parts = 6;
    final int total = 6000;
    String topic = unique("scale-out");
    String group = unique("g-scale-out");
    try (Admin admin = admin()) {
      createTopics(admin, parts, topic);
      fastHeartbeats(admin, group);
    }
    Properties props = kip848(group, "uniform");
    Map<String, List<String>> readBy = new ConcurrentHashMap<>();
    Map<String, Integer> reads = new ConcurrentHashMap<>();
    Set<String> uncommitted = ConcurrentHashMap.newKeySet();
    AtomicBoolean stop = new AtomicBoolean();
    ExecutorService pool = Executors.newFixedThreadPool(3);
    try {
      Future<?> producing = pool.submit(() -> {
        try (KafkaProducer<String, String> p = producer()) {
          for (int i = 0; i < total; i++) {
            p.send(new ProducerRecord<>(topic, "k" + i, Integer.toString(i)));
            if (i % 20 == 0) {
              Thread.sleep(10);
            }
          }
          p.flush();
        }
        return null;
      });
      Future<?> first = pool.submit(() -> member(props, topic, "a", readBy, reads, uncommitted, stop));
      await(Duration.ofSeconds(30), "first member never read 1000 records", () -> reads.getOrDefault("a", 0) >= 1000);
      assertFalse(producing.isDone(), "the producer is still writing when the second member joins");
      Future<?> second = pool.submit(() -> member(props, topic, "b", readBy, reads, uncommitted, stop));
      producing.get(60, TimeUnit.SECONDS);
      await(Duration.ofSeconds(40), "members never read every record", () -> readBy.size() >= total);
      Thread.sleep(500);
      stop.set(true);
      first.get(30, TimeUnit.SECONDS);
      second.get(30, TimeUnit.SECONDS);
    } finally {
      stop.set(true);
      pool.shutdownNow();
    }
    assertTrue(reads.getOrDefault("b", 0) > 0, "the second member read records: " + reads);
    List<String> twice = readBy.entrySet().stream().filter(e -> e.getValue().size() > 1 && !uncommitted.contains(e.getKey()))
        .map(e -> e.getKey() + " by " + e.getValue()).sorted().limit(10).collect(Collectors.toList());
    assertEquals(List.of(), twice, "records read more than once though their first read was committed");
    System.out.printf("scale-out: %d records read, %d of them under a refused commit%n", total, uncommitted.size());
    assertEquals(total, readBy.size(), "distinct records read");
    try (Admin admin = admin()) {
      Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
      Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
      partitions(topic, parts).forEach(tp -> latest.put(tp, OffsetSpec.latest()));
      Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends = admin.listOffsets(latest).all().get();
      long sum = 0;
      for (TopicPartition tp : partitions(topic, parts)) {
        assertEquals(ends.get(tp).offset(), committed.get(tp).offset(), "committed offset of " + tp + " is its log end");
        sum += ends.get(tp).offset();
      }
      assertEquals(total, sum, "records in the topic");
    }
  }

  /** Runs one group member until stop, noting which member read which record. */
  static Void member(Properties props, String topic, String name, Map<String, List<String>> readBy,
      Map<String, Integer> reads, Set<String> uncommitted, AtomicBoolean stop) {
    try (Member m = new Member(props, topic)) {
      m.uncommitted = uncommitted;
      Map<Integer, Long> last = m.lastRead;
      while (!stop.get()) {
        int before = m.records.size();
        m.poll();
        for (ConsumerRecord<String, String> r : m.records.subList(before, m.records.size())) {
          Long prev = last.put(r.partition(), r.offset());
          if (prev != null && prev >= r.offset()) {
            throw new AssertionError(name + " read partition " + r.partition() + " out of order: " + prev + " then " + r.offset());
          }
          readBy.computeIfAbsent(r.value(), k -> new CopyOnWriteArrayList<>()).add(name + "@" + r.partition() + ":" + r.offset());
          m.pending.add(r.value());
        }
        reads.merge(name, m.records.size() - before, Integer::sum);
        if (m.records.size() > before) {
          m.commit();
        }
        m.records.clear();
      }
    }
    return null;
  }
}
