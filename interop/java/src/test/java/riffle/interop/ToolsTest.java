package riffle.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static riffle.interop.Riffle.*;
import static riffle.interop.Tool.*;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Kafka's command-line tools, run from the kafka-tools jar's main classes
 * against Riffle's broker, their output checked.
 */
@Timeout(value = 240, unit = TimeUnit.SECONDS)
class ToolsTest {

  /** The rows of a tool's table output, as maps from the header's column names. */
  static List<Map<String, String>> table(String out, String firstColumn) {
    List<Map<String, String>> rows = new ArrayList<>();
    String[] header = null;
    for (String line : out.split("\n")) {
      String[] cols = line.trim().split("\\s+");
      if (cols.length == 0 || cols[0].isEmpty()) {
        continue;
      }
      if (cols[0].equals(firstColumn)) {
        header = cols;
        continue;
      }
      if (header != null && cols.length == header.length) {
        Map<String, String> row = new HashMap<>();
        for (int i = 0; i < cols.length; i++) {
          row.put(header[i], cols[i]);
        }
        rows.add(row);
      }
    }
    return rows;
  }

  static String input(int n) {
    StringBuilder sb = new StringBuilder();
    for (int i = 0; i < n; i++) {
      sb.append("k").append(i).append(":line ").append(i).append('\n');
    }
    return sb.toString();
  }

  @Test
  void topics() throws Exception {
    String b = bootstrap();
    String topic = unique("tool-topic");
    Result r = ok(TOPICS, "--bootstrap-server", b, "--create", "--topic", topic, "--partitions", "3",
        "--replication-factor", "1", "--config", "retention.ms=3600000");
    assertEquals("Created topic " + topic + ".", r.out().strip());

    Result dup = run("", TOPICS, "--bootstrap-server", b, "--create", "--topic", topic, "--partitions", "1");
    assertNotEquals(0, dup.exit(), "creating an existing topic fails");
    assertTrue((dup.out() + dup.err()).contains("already exists"), dup.toString());

    assertTrue(ok(TOPICS, "--bootstrap-server", b, "--list").lines().contains(topic), "--list has the topic");

    r = ok(TOPICS, "--bootstrap-server", b, "--describe", "--topic", topic);
    List<String> lines = r.lines();
    assertEquals(4, lines.size(), r.out());
    assertTrue(lines.get(0).matches("Topic: " + Pattern.quote(topic) + "\tTopicId: \\S{22}\tPartitionCount: 3\tReplicationFactor: 1\t"
        + "Configs: retention.ms=3600000.*"), lines.get(0));
    for (int p = 0; p < 3; p++) {
      assertTrue(lines.get(p + 1).matches("\tTopic: " + Pattern.quote(topic) + "\tPartition: " + p
          + "\tLeader: 1\tReplicas: 1\tIsr: 1.*"), lines.get(p + 1));
    }

    ok(TOPICS, "--bootstrap-server", b, "--alter", "--topic", topic, "--partitions", "5");
    r = ok(TOPICS, "--bootstrap-server", b, "--describe", "--topic", topic);
    assertTrue(r.out().contains("PartitionCount: 5"), r.out());
    assertEquals(6, r.lines().size(), r.out());

    ok(TOPICS, "--bootstrap-server", b, "--delete", "--topic", topic);
    await(java.time.Duration.ofSeconds(10), "deleted topic still listed", () -> {
      try {
        return !ok(TOPICS, "--bootstrap-server", b, "--list").lines().contains(topic);
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    });
  }

  @Test
  void consoleProducerConsumerAndConsumerGroups() throws Exception {
    String b = bootstrap();
    String topic = unique("tool-console");
    String group = unique("tool-group");
    try (Admin admin = admin()) {
      createTopics(admin, 1, topic);
    }
    final int n = 50;
    okWithInput(input(n), CONSOLE_PRODUCER, "--bootstrap-server", b, "--topic", topic,
        "--reader-property", "parse.key=true", "--reader-property", "key.separator=:");

    Result r = ok(CONSOLE_CONSUMER, "--bootstrap-server", b, "--topic", topic, "--group", group, "--from-beginning",
        "--max-messages", Integer.toString(n), "--timeout-ms", "30000",
        "--formatter-property", "print.key=true", "--formatter-property", "key.separator=:");
    assertEquals(Arrays.asList(input(n).strip().split("\n")), r.lines(), "console consumer output");
    assertTrue(r.err().contains("Processed a total of " + n + " messages"), r.err());

    assertTrue(ok(CONSUMER_GROUPS, "--bootstrap-server", b, "--list").lines().contains(group), "--list has the group");
    r = ok(CONSUMER_GROUPS, "--bootstrap-server", b, "--describe", "--group", group);
    List<Map<String, String>> rows = table(r.out(), "GROUP");
    assertEquals(1, rows.size(), r.out());
    Map<String, String> row = rows.get(0);
    assertEquals(group, row.get("GROUP"));
    assertEquals(topic, row.get("TOPIC"));
    assertEquals("0", row.get("PARTITION"));
    assertEquals(Integer.toString(n), row.get("CURRENT-OFFSET"));
    assertEquals(Integer.toString(n), row.get("LOG-END-OFFSET"));
    assertEquals("0", row.get("LAG"));

    r = ok(CONSUMER_GROUPS, "--bootstrap-server", b, "--describe", "--group", group, "--state");
    rows = table(r.out(), "GROUP");
    assertEquals(1, rows.size(), r.out());
    assertEquals("Empty", rows.get(0).get("STATE"), r.out());
    assertEquals("0", rows.get(0).get("#MEMBERS"), r.out());

    r = ok(CONSUMER_GROUPS, "--bootstrap-server", b, "--reset-offsets", "--group", group, "--topic", topic,
        "--to-offset", "20", "--execute");
    rows = table(r.out(), "GROUP");
    assertEquals(1, rows.size(), r.out());
    assertEquals("20", rows.get(0).get("NEW-OFFSET"), r.out());
    r = ok(CONSUMER_GROUPS, "--bootstrap-server", b, "--describe", "--group", group);
    row = table(r.out(), "GROUP").get(0);
    assertEquals("20", row.get("CURRENT-OFFSET"), r.out());
    assertEquals("30", row.get("LAG"), r.out());

    // A member of the group now starts at offset 20.
    r = ok(CONSOLE_CONSUMER, "--bootstrap-server", b, "--topic", topic, "--group", group,
        "--max-messages", "30", "--timeout-ms", "30000");
    List<String> want = new ArrayList<>();
    for (int i = 20; i < n; i++) {
      want.add("line " + i);
    }
    assertEquals(want, r.lines(), "consumer after the reset");

    r = ok(CONSUMER_GROUPS, "--bootstrap-server", b, "--delete", "--group", group);
    assertTrue(r.out().contains("Deletion of requested consumer groups ('" + group + "') was successful."), r.out());
    assertFalse(ok(CONSUMER_GROUPS, "--bootstrap-server", b, "--list").lines().contains(group), "deleted group listed");
  }

  @Test
  void consumerGroupsToolOnActiveConsumerProtocolGroup() throws Exception {
    String b = bootstrap();
    String topic = unique("tool-848");
    String group = unique("tool-g-848");
    try (Admin admin = admin()) {
      createTopics(admin, 2, topic);
    }
    java.util.Properties props = consumerProps(group);
    props.put(org.apache.kafka.clients.consumer.ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
    props.put(org.apache.kafka.clients.consumer.ConsumerConfig.CLIENT_ID_CONFIG, "tool-848-client");
    try (var c = new org.apache.kafka.clients.consumer.KafkaConsumer<String, String>(props)) {
      c.subscribe(List.of(topic));
      await(java.time.Duration.ofSeconds(30), "member never got its partitions", () -> {
        c.poll(java.time.Duration.ofMillis(100));
        return c.assignment().size() == 2;
      });
      Result r = ok(CONSUMER_GROUPS, "--bootstrap-server", b, "--describe", "--group", group, "--state");
      List<Map<String, String>> rows = table(r.out(), "GROUP");
      assertEquals(1, rows.size(), r.out());
      assertEquals("Stable", rows.get(0).get("STATE"), r.out());
      assertEquals("uniform", rows.get(0).get("ASSIGNMENT-STRATEGY"), r.out());
      assertEquals("1", rows.get(0).get("#MEMBERS"), r.out());

      r = ok(CONSUMER_GROUPS, "--bootstrap-server", b, "--describe", "--group", group, "--members");
      rows = table(r.out(), "GROUP");
      assertEquals(1, rows.size(), r.out());
      assertEquals("tool-848-client", rows.get(0).get("CLIENT-ID"), r.out());
      assertEquals("2", rows.get(0).get("#PARTITIONS"), r.out());

      Result busy = run("", CONSUMER_GROUPS, "--bootstrap-server", b, "--delete", "--group", group);
      assertTrue((busy.out() + busy.err()).contains("NonEmptyGroupException")
          || (busy.out() + busy.err()).contains("is not empty"), "deleting an active group is refused: " + busy);
    }
  }

  @Test
  void configsAndShareGroups() throws Exception {
    String b = bootstrap();
    String topic = unique("tool-share");
    String group = unique("tool-sg");
    try (Admin admin = admin()) {
      createTopics(admin, 1, topic);
    }
    Result r = ok(CONFIGS, "--bootstrap-server", b, "--alter", "--entity-type", "topics", "--entity-name", topic,
        "--add-config", "retention.ms=7200000,max.message.bytes=2000000");
    assertEquals("Completed updating config for topic " + topic + ".", r.out().strip());
    r = ok(CONFIGS, "--bootstrap-server", b, "--describe", "--entity-type", "topics", "--entity-name", topic);
    assertTrue(r.out().contains("Dynamic configs for topic " + topic + " are:"), r.out());
    assertTrue(r.out().contains("retention.ms=7200000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=7200000"), r.out());
    assertTrue(r.out().contains("max.message.bytes=2000000 sensitive=false"), r.out());
    ok(CONFIGS, "--bootstrap-server", b, "--alter", "--entity-type", "topics", "--entity-name", topic,
        "--delete-config", "max.message.bytes");
    r = ok(CONFIGS, "--bootstrap-server", b, "--describe", "--entity-type", "topics", "--entity-name", topic);
    assertFalse(r.out().contains("max.message.bytes="), r.out());

    r = ok(CONFIGS, "--bootstrap-server", b, "--alter", "--entity-type", "groups", "--entity-name", group,
        "--add-config", "share.auto.offset.reset=earliest");
    assertEquals("Completed updating config for group " + group + ".", r.out().strip());
    r = ok(CONFIGS, "--bootstrap-server", b, "--describe", "--entity-type", "groups", "--entity-name", group);
    assertTrue(r.out().contains("share.auto.offset.reset=earliest"), r.out());

    final int n = 40;
    okWithInput(input(n), CONSOLE_PRODUCER, "--bootstrap-server", b, "--topic", topic);
    r = ok(CONSOLE_SHARE_CONSUMER, "--bootstrap-server", b, "--topic", topic, "--group", group,
        "--max-messages", Integer.toString(n), "--timeout-ms", "30000");
    assertEquals(Arrays.asList(input(n).strip().split("\n")), r.lines().stream().sorted(
        (x, y) -> Integer.compare(Integer.parseInt(x.split(":")[0].substring(1)), Integer.parseInt(y.split(":")[0].substring(1))))
        .collect(Collectors.toList()), "console share consumer output");

    assertTrue(ok(SHARE_GROUPS, "--bootstrap-server", b, "--list").lines().contains(group), "--list has the share group");
    r = ok(SHARE_GROUPS, "--bootstrap-server", b, "--describe", "--group", group);
    List<Map<String, String>> rows = table(r.out(), "GROUP");
    assertEquals(1, rows.size(), r.out());
    assertEquals(topic, rows.get(0).get("TOPIC"), r.out());
    assertEquals("0", rows.get(0).get("PARTITION"), r.out());
    assertEquals(Integer.toString(n), rows.get(0).get("START-OFFSET"), r.out());
    r = ok(SHARE_GROUPS, "--bootstrap-server", b, "--describe", "--group", group, "--state");
    rows = table(r.out(), "GROUP");
    assertEquals(1, rows.size(), r.out());
    assertEquals("Empty", rows.get(0).get("STATE"), r.out());

    r = ok(SHARE_GROUPS, "--bootstrap-server", b, "--reset-offsets", "--group", group, "--topic", topic,
        "--to-earliest", "--execute");
    rows = table(r.out(), "GROUP");
    assertEquals(1, rows.size(), r.out());
    assertEquals("0", rows.get(0).get("NEW-OFFSET"), r.out());
    r = ok(SHARE_GROUPS, "--bootstrap-server", b, "--describe", "--group", group);
    assertEquals("0", table(r.out(), "GROUP").get(0).get("START-OFFSET"), r.out());

    ok(SHARE_GROUPS, "--bootstrap-server", b, "--delete-offsets", "--group", group, "--topic", topic);
    r = ok(SHARE_GROUPS, "--bootstrap-server", b, "--delete", "--group", group);
    assertTrue(r.out().contains(group), r.out());
    assertFalse(ok(SHARE_GROUPS, "--bootstrap-server", b, "--list").lines().contains(group), "deleted share group listed");
  }

  @Test
  void perfTools() throws Exception {
    String b = bootstrap();
    String topic = unique("tool-perf");
    final int n = 20000;
    try (Admin admin = admin()) {
      createTopics(admin, 3, topic);
    }
    Result r = ok(PRODUCER_PERF, "--bootstrap-server", b, "--topic", topic, "--num-records", Integer.toString(n),
        "--record-size", "100", "--throughput", "-1", "--producer-props", "acks=all", "compression.type=lz4");
    List<String> lines = r.lines();
    String last = lines.get(lines.size() - 1);
    Matcher m = Pattern.compile("^(\\d+) records sent, [\\d.]+ records/sec \\([\\d.]+ MB/sec\\), [\\d.]+ ms avg latency, "
        + "[\\d.]+ ms max latency, \\d+ ms 50th, \\d+ ms 95th, \\d+ ms 99th, \\d+ ms 99.9th\\.$").matcher(last);
    assertTrue(m.matches(), "producer perf summary: " + last);
    assertEquals(n, Integer.parseInt(m.group(1)));
    try (Admin admin = admin()) {
      long total = 0;
      for (TopicPartition tp : partitions(topic, 3)) {
        total += admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset();
      }
      assertEquals(n, total, "records in the topic after the producer perf test");
    }

    r = ok(CONSUMER_PERF, "--bootstrap-server", b, "--topic", topic, "--num-records", Integer.toString(n), "--timeout", "30000");
    List<Map<String, String>> rows = csvTable(r.out(), "start.time");
    assertEquals(1, rows.size(), r.out());
    assertEquals(Integer.toString(n), rows.get(0).get("data.consumed.in.nMsg"), r.out());

    String group = unique("tool-perf-sg");
    ok(CONFIGS, "--bootstrap-server", b, "--alter", "--entity-type", "groups", "--entity-name", group,
        "--add-config", "share.auto.offset.reset=earliest");
    r = ok(SHARE_CONSUMER_PERF, "--bootstrap-server", b, "--topic", topic, "--group", group,
        "--num-records", Integer.toString(n), "--timeout", "30000");
    rows = csvTable(r.out(), "start.time");
    assertEquals(1, rows.size(), r.out());
    assertEquals(Integer.toString(n), rows.get(0).get("data.consumed.in.nMsg"), r.out());
  }

  /** The rows of a comma-separated table whose header starts with firstColumn. */
  static List<Map<String, String>> csvTable(String out, String firstColumn) {
    List<Map<String, String>> rows = new ArrayList<>();
    String[] header = null;
    for (String line : out.split("\n")) {
      String[] cols = line.split(",\\s*");
      if (cols[0].trim().equals(firstColumn)) {
        header = Arrays.stream(cols).map(String::trim).toArray(String[]::new);
        continue;
      }
      if (header != null && cols.length == header.length) {
        Map<String, String> row = new HashMap<>();
        for (int i = 0; i < cols.length; i++) {
          row.put(header[i], cols[i].trim());
        }
        rows.add(row);
      }
    }
    return rows;
  }
}
