package riffle.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static riffle.interop.Riffle.*;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.InvalidTopicException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Kafka's Admin client: topics, partitions, configs, groups, offsets, the cluster. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class AdminTest {

  static Throwable cause(ExecutionException e) {
    return e.getCause();
  }

  static <T> Throwable failure(org.apache.kafka.common.KafkaFuture<T> f) {
    ExecutionException e = assertThrows(ExecutionException.class, f::get);
    return e.getCause();
  }

  @Test
  void topicsAndPartitions() throws Exception {
    String topic = unique("admin-topic");
    try (Admin admin = admin()) {
      int node = admin.describeCluster().nodes().get().iterator().next().id();
      admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1).configs(Map.of("max.message.bytes", "2000000"))))
          .all().get();
      assertTrue(admin.listTopics().names().get().contains(topic), "listTopics has the new topic");

      TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
      assertEquals(2, d.partitions().size());
      assertFalse(d.isInternal());
      assertNotNull(d.topicId());
      for (TopicPartitionInfo p : d.partitions()) {
        assertEquals(node, p.leader().id(), "leader of partition " + p.partition());
        assertEquals(List.of(node), p.replicas().stream().map(Node::id).collect(Collectors.toList()));
        assertEquals(List.of(node), p.isr().stream().map(Node::id).collect(Collectors.toList()));
      }
      TopicDescription byId = admin.describeTopics(org.apache.kafka.common.TopicCollection.ofTopicIds(List.of(d.topicId())))
          .allTopicIds().get().get(d.topicId());
      assertEquals(topic, byId.name(), "describe by topic id");

      assertInstanceOf(TopicExistsException.class, failure(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all()));
      assertInstanceOf(InvalidTopicException.class, failure(admin.createTopics(List.of(new NewTopic("bad name!", 1, (short) 1))).all()));

      admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get();
      assertEquals(5, admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size());
      assertInstanceOf(InvalidPartitionsException.class, failure(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all()));

      admin.deleteTopics(List.of(topic)).all().get();
      await(Duration.ofSeconds(10), "deleted topic still listed", () -> {
        try {
          return !admin.listTopics().names().get().contains(topic);
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      });
      assertInstanceOf(UnknownTopicOrPartitionException.class, failure(admin.describeTopics(List.of(topic)).allTopicNames()));
      assertInstanceOf(UnknownTopicOrPartitionException.class, failure(admin.deleteTopics(List.of(topic)).all()));
    }
  }

  @Test
  void configs() throws Exception {
    String topic = unique("admin-configs");
    try (Admin admin = admin()) {
      admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1).configs(Map.of("max.message.bytes", "2000000"))))
          .all().get();
      ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
      Config c = admin.describeConfigs(List.of(res)).all().get().get(res);
      ConfigEntry retention = c.get("retention.ms");
      assertEquals("604800000", retention.value());
      assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, retention.source());
      assertTrue(retention.isDefault());
      ConfigEntry maxBytes = c.get("max.message.bytes");
      assertEquals("2000000", maxBytes.value());
      assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, maxBytes.source());
      assertEquals("delete", c.get("cleanup.policy").value());

      admin.incrementalAlterConfigs(Map.of(res, List.of(
          new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET),
          new AlterConfigOp(new ConfigEntry("max.message.bytes", null), AlterConfigOp.OpType.DELETE),
          new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND)))).all().get();
      c = admin.describeConfigs(List.of(res)).all().get().get(res);
      assertEquals("3600000", c.get("retention.ms").value());
      assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, c.get("retention.ms").source());
      assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, c.get("max.message.bytes").source());
      assertEquals("delete,compact", c.get("cleanup.policy").value());

      admin.incrementalAlterConfigs(Map.of(res, List.of(
          new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.SUBTRACT)))).all().get();
      assertEquals("delete", admin.describeConfigs(List.of(res)).all().get().get(res).get("cleanup.policy").value());

      assertInstanceOf(InvalidConfigurationException.class, failure(admin.incrementalAlterConfigs(Map.of(res, List.of(
          new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET)))).all()));
      assertInstanceOf(InvalidConfigurationException.class, failure(admin.incrementalAlterConfigs(Map.of(res, List.of(
          new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET)))).all()));
      assertEquals("3600000", admin.describeConfigs(List.of(res)).all().get().get(res).get("retention.ms").value(),
          "a refused alteration changes nothing");

      ConfigResource missing = new ConfigResource(ConfigResource.Type.TOPIC, unique("no-such-topic"));
      assertInstanceOf(UnknownTopicOrPartitionException.class, failure(admin.describeConfigs(List.of(missing)).all()));

      String node = Integer.toString(admin.describeCluster().nodes().get().iterator().next().id());
      ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, node);
      Config bc = admin.describeConfigs(List.of(broker)).all().get().get(broker);
      assertFalse(bc.entries().isEmpty(), "broker configs");
    }
  }

  /**
   * describeLogDirs reports the broker's log directory with the size of
   * every partition it holds, and describeReplicaLogDirs finds a replica in
   * it; a partition that does not exist is left out.
   */
  @Test
  void logDirs() throws Exception {
    String topic = unique("admin-logdirs");
    try (Admin admin = admin()) {
      createTopics(admin, 2, topic);
      try (KafkaProducer<String, String> p = producer()) {
        for (int i = 0; i < 10; i++) {
          p.send(new ProducerRecord<>(topic, 0, "k" + i, "value " + i)).get();
        }
      }
      int node = admin.describeCluster().nodes().get().iterator().next().id();
      Map<String, org.apache.kafka.clients.admin.LogDirDescription> dirs =
          admin.describeLogDirs(List.of(node)).allDescriptions().get().get(node);
      assertEquals(1, dirs.size(), "log dirs " + dirs.keySet());
      Map.Entry<String, org.apache.kafka.clients.admin.LogDirDescription> dir = dirs.entrySet().iterator().next();
      assertTrue(dir.getKey().startsWith("/"), "log dir " + dir.getKey() + " is absolute");
      assertEquals(null, dir.getValue().error());
      assertTrue(dir.getValue().totalBytes().orElse(0L) > 0, "total bytes");
      assertTrue(dir.getValue().usableBytes().orElse(-1L) >= 0, "usable bytes");
      Map<TopicPartition, org.apache.kafka.clients.admin.ReplicaInfo> replicas = dir.getValue().replicaInfos();
      assertTrue(replicas.get(new TopicPartition(topic, 0)).size() > 0, "partition 0 holds records: " + replicas);
      assertEquals(0, replicas.get(new TopicPartition(topic, 1)).size(), "partition 1 is empty");
      assertEquals(0, replicas.get(new TopicPartition(topic, 0)).offsetLag());
      assertFalse(replicas.get(new TopicPartition(topic, 0)).isFuture());

      org.apache.kafka.common.TopicPartitionReplica held = new org.apache.kafka.common.TopicPartitionReplica(topic, 0, node);
      org.apache.kafka.common.TopicPartitionReplica missing = new org.apache.kafka.common.TopicPartitionReplica(topic, 7, node);
      var replicaDirs = admin.describeReplicaLogDirs(List.of(held, missing)).all().get();
      assertEquals(dir.getKey(), replicaDirs.get(held).getCurrentReplicaLogDir());
      assertEquals(null, replicaDirs.get(missing).getCurrentReplicaLogDir(), "a partition that does not exist has no dir");
    }
  }

  /** Commits offsets as a classic group's only member, then leaves the group empty. */
  static void commitAsMember(String group, String topic, Map<TopicPartition, OffsetAndMetadata> offsets) throws Exception {
    Properties props = consumerProps(group);
    props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props)) {
      c.subscribe(List.of(topic));
      await(Duration.ofSeconds(30), "member never got its partitions", () -> {
        c.poll(Duration.ofMillis(100));
        return !c.assignment().isEmpty();
      });
      c.commitSync(offsets);
    }
  }

  static Optional<GroupListing> listed(Admin admin, ListGroupsOptions opts, String group) throws Exception {
    Collection<GroupListing> all = admin.listGroups(opts).all().get();
    return all.stream().filter(g -> g.groupId().equals(group)).findFirst();
  }

  @Test
  void consumerGroups() throws Exception {
    String topic = unique("admin-groups");
    String group = unique("g-admin");
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);
    try (Admin admin = admin()) {
      createTopics(admin, 2, topic);
      try (KafkaProducer<String, String> p = producer()) {
        for (int i = 0; i < 20; i++) {
          p.send(new ProducerRecord<>(topic, i % 2, "k", "v" + i));
        }
      }
      commitAsMember(group, topic, Map.of(p0, new OffsetAndMetadata(5), p1, new OffsetAndMetadata(6, "meta")));

      GroupListing gl = listed(admin, new ListGroupsOptions(), group).orElseThrow(() -> new AssertionError("listGroups lacks " + group));
      assertEquals(Optional.of(GroupType.CLASSIC), gl.type());
      assertEquals("consumer", gl.protocol());
      assertEquals(Optional.of(GroupState.EMPTY), gl.groupState());
      assertTrue(listed(admin, ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(GroupState.EMPTY)), group).isPresent());
      assertFalse(listed(admin, ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(GroupState.STABLE)), group).isPresent());
      assertFalse(listed(admin, ListGroupsOptions.forShareGroups(), group).isPresent());

      ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
      assertEquals(GroupState.EMPTY, d.groupState());
      assertEquals(GroupType.CLASSIC, d.type());
      assertTrue(d.members().isEmpty());

      Map<TopicPartition, OffsetAndMetadata> offs = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
      assertEquals(5, offs.get(p0).offset());
      assertEquals(6, offs.get(p1).offset());
      assertEquals("meta", offs.get(p1).metadata());

      admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(9, "reset"), p1, new OffsetAndMetadata(0))).all().get();
      offs = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
      assertEquals(9, offs.get(p0).offset());
      assertEquals("reset", offs.get(p0).metadata());
      assertEquals(0, offs.get(p1).offset());

      admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all().get();
      offs = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
      assertEquals(Set.of(p0), offs.keySet(), "offsets after deleting " + p1);

      // A consumer that joins now starts at the altered offset.
      Properties props = consumerProps(group);
      props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
      try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props)) {
        c.subscribe(List.of(topic));
        List<ConsumerRecord<String, String>> got = new java.util.ArrayList<>();
        await(Duration.ofSeconds(30), "consumer never read the remaining records", () -> {
          c.poll(Duration.ofMillis(100)).forEach(got::add);
          return got.size() >= 11;
        });
        Map<Integer, Long> first = got.stream().collect(Collectors.toMap(ConsumerRecord::partition, ConsumerRecord::offset, Math::min));
        assertEquals(Map.of(0, 9L, 1, 0L), first, "first offsets read per partition");
        assertEquals(11, got.size());
      }

      admin.deleteConsumerGroups(List.of(group)).all().get();
      assertFalse(listed(admin, new ListGroupsOptions(), group).isPresent(), "deleted group still listed");
      assertInstanceOf(GroupIdNotFoundException.class, failure(admin.describeConsumerGroups(List.of(group)).all()));
      assertInstanceOf(GroupIdNotFoundException.class, failure(admin.deleteConsumerGroups(List.of(group)).all()));
    }
  }

  @Test
  void describeActiveConsumerProtocolGroup() throws Exception {
    String topic = unique("admin-848");
    String group = unique("g-admin-848");
    try (Admin admin = admin()) {
      createTopics(admin, 3, topic);
      Properties props = consumerProps(group);
      props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
      props.put(ConsumerConfig.CLIENT_ID_CONFIG, "describe-me");
      try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props)) {
        c.subscribe(List.of(topic));
        await(Duration.ofSeconds(30), "member never got its partitions", () -> {
          c.poll(Duration.ofMillis(100));
          return c.assignment().size() == 3;
        });
        GroupListing gl = listed(admin, ListGroupsOptions.forConsumerGroups(), group).orElseThrow();
        assertEquals(Optional.of(GroupType.CONSUMER), gl.type());
        assertEquals(Optional.of(GroupState.STABLE), gl.groupState());
        ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        assertEquals(GroupType.CONSUMER, d.type());
        assertEquals(GroupState.STABLE, d.groupState());
        assertEquals("uniform", d.partitionAssignor());
        assertEquals(1, d.members().size());
        MemberDescription m = d.members().iterator().next();
        assertEquals("describe-me", m.clientId());
        assertEquals(Set.copyOf(partitions(topic, 3)), m.assignment().topicPartitions());
        assertTrue(d.groupEpoch().orElseThrow() > 0, "group epoch");
        assertEquals(d.groupEpoch(), d.targetAssignmentEpoch());
      }
    }
  }

  @Test
  void listOffsetsAndDeleteRecords() throws Exception {
    String topic = unique("admin-offsets");
    TopicPartition tp = new TopicPartition(topic, 0);
    long t0 = System.currentTimeMillis() - 60_000;
    long[] ts = {0, 1, 2, 3, 4, 9, 5, 6, 7, 8};
    try (Admin admin = admin()) {
      createTopics(admin, 1, topic);
      try (KafkaProducer<String, String> p = producer()) {
        for (int i = 0; i < ts.length; i++) {
          p.send(new ProducerRecord<>(topic, 0, t0 + ts[i] * 1000, "k" + i, "v" + i)).get();
        }
      }
      assertEquals(0, offset(admin, tp, OffsetSpec.earliest()).offset());
      assertEquals(10, offset(admin, tp, OffsetSpec.latest()).offset());
      ListOffsetsResultInfo max = offset(admin, tp, OffsetSpec.maxTimestamp());
      assertEquals(5, max.offset(), "offset of the largest timestamp");
      assertEquals(t0 + 9000, max.timestamp());
      ListOffsetsResultInfo at3 = offset(admin, tp, OffsetSpec.forTimestamp(t0 + 3000));
      assertEquals(3, at3.offset());
      assertEquals(t0 + 3000, at3.timestamp());
      assertEquals(5, offset(admin, tp, OffsetSpec.forTimestamp(t0 + 4500)).offset(), "first record at or after the time");
      assertEquals(-1, offset(admin, tp, OffsetSpec.forTimestamp(t0 + 10_000)).offset(), "no record that late");
      assertEquals(0, offset(admin, tp, OffsetSpec.earliestLocal()).offset(), "earliest-local without tiered storage");

      long low = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp).get().lowWatermark();
      assertEquals(4, low);
      assertEquals(4, offset(admin, tp, OffsetSpec.earliest()).offset());
      assertEquals(10, offset(admin, tp, OffsetSpec.latest()).offset());
      List<ConsumerRecord<String, String>> rest = readAll(List.of(tp), 6);
      assertEquals(4, rest.get(0).offset());
      assertEquals("v4", rest.get(0).value());

      assertInstanceOf(OffsetOutOfRangeException.class,
          failure(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(11))).lowWatermarks().get(tp)));
      // -1 means the high watermark.
      assertEquals(10, admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(-1))).lowWatermarks().get(tp).get().lowWatermark());
      assertEquals(10, offset(admin, tp, OffsetSpec.earliest()).offset());
    }
  }

  static ListOffsetsResultInfo offset(Admin admin, TopicPartition tp, OffsetSpec spec) throws Exception {
    return admin.listOffsets(Map.of(tp, spec)).partitionResult(tp).get();
  }

  @Test
  void clusterAndQuorum() throws Exception {
    try (Admin admin = admin()) {
      DescribeClusterResult c = admin.describeCluster();
      Collection<Node> nodes = c.nodes().get();
      assertEquals(1, nodes.size());
      Node n = nodes.iterator().next();
      String[] hp = bootstrap().split(":");
      assertEquals(hp[0], n.host());
      assertEquals(Integer.parseInt(hp[1]), n.port());
      assertFalse(c.clusterId().get().isEmpty(), "cluster id");
      assertEquals(n.id(), c.controller().get().id());

      QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get();
      assertEquals(n.id(), q.leaderId());
      assertEquals(List.of(n.id()), q.voters().stream().map(QuorumInfo.ReplicaState::replicaId).collect(Collectors.toList()));
      assertTrue(q.highWatermark() > 0, "metadata high watermark");
      assertTrue(q.leaderEpoch() > 0, "leader epoch");
    }
  }

  /**
   * The Admin calls whose APIs Riffle does not serve fail at once with
   * UnsupportedVersionException, never by hanging until the timeout. This is
   * the list of unserved Admin APIs: a call that starts working belongs in
   * a real test instead.
   */
  @Test
  void unservedApisFailClearly() throws Exception {
    String topic = unique("admin-unserved");
    try (Admin admin = admin()) {
      createTopics(admin, 1, topic);
      TopicPartition tp = new TopicPartition(topic, 0);
      Map<String, org.apache.kafka.common.KafkaFuture<?>> calls = new java.util.TreeMap<>();
      calls.put("describeClientQuotas", admin.describeClientQuotas(org.apache.kafka.common.quota.ClientQuotaFilter.all()).entities());
      calls.put("describeAcls", admin.describeAcls(org.apache.kafka.common.acl.AclBindingFilter.ANY).values());
      calls.put("describeUserScramCredentials", admin.describeUserScramCredentials().all());
      calls.put("electLeaders", admin.electLeaders(org.apache.kafka.common.ElectionType.PREFERRED, Set.of(tp)).all());
      calls.put("listPartitionReassignments", admin.listPartitionReassignments().reassignments());
      calls.put("describeDelegationToken", admin.describeDelegationToken().delegationTokens());
      calls.put("describeStreamsGroups", admin.describeStreamsGroups(List.of("none")).all());
      calls.put("listConfigResources", admin.listConfigResources(
          Set.of(ConfigResource.Type.CLIENT_METRICS), new org.apache.kafka.clients.admin.ListConfigResourcesOptions()).all());
      for (Map.Entry<String, org.apache.kafka.common.KafkaFuture<?>> c : calls.entrySet()) {
        ExecutionException e = assertThrows(ExecutionException.class, () -> c.getValue().get(10, TimeUnit.SECONDS), c.getKey());
        assertInstanceOf(org.apache.kafka.common.errors.UnsupportedVersionException.class, e.getCause(), c.getKey());
      }
    }
  }
}
