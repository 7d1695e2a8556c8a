package broker

import (
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// configDef describes one config key: its type, default and check. Topic
// keys name the broker-level key that supplies their default, as Kafka's
// retention.ms falls back to log.retention.ms.
type configDef struct {
	name       string
	brokerName string // for topic keys: the broker-level default; "" if none
	typ        kmsg.ConfigType
	def        string
	check      func(string) error
	doc        string
}

const noEffect = " Accepted for compatibility with Kafka tooling; Riffle does not act on it yet."

func intRange(lo, hi int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("%d is outside [%d, %d]", n, lo, hi)
		}
		return nil
	}
}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		if slices.Contains(vals, v) {
			return nil
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(vals, ", "))
	}
}

func isBool(v string) error { return oneOf("true", "false")(v) }

func anyValue(string) error { return nil }

func isDouble(v string) error {
	if _, err := strconv.ParseFloat(v, 64); err != nil {
		return fmt.Errorf("%q is not a number", v)
	}
	return nil
}

func cleanupPolicy(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if err := oneOf("delete", "compact")(strings.TrimSpace(p)); err != nil {
			return err
		}
	}
	return nil
}

const (
	maxInt32 = 1<<31 - 1
	maxInt64 = 1<<63 - 1
)

// topicConfigs are the topic-level keys Riffle accepts, sorted by name.
var topicConfigs = []configDef{
	{"cleanup.policy", "log.cleanup.policy", kmsg.ConfigTypeList, "delete", cleanupPolicy,
		"delete removes old segments by retention.ms and retention.bytes; compact keeps the latest record of each key, cleaning rolled segments in the background. A topic that is compact only is never deleted by retention."},
	{"compression.gzip.level", "compression.gzip.level", kmsg.ConfigTypeInt, "-1", intRange(-1, 9), "Level Kafka recompresses gzip with; Riffle never recompresses." + noEffect},
	{"compression.lz4.level", "compression.lz4.level", kmsg.ConfigTypeInt, "9", intRange(1, 17), "Level Kafka recompresses lz4 with; Riffle never recompresses." + noEffect},
	{"compression.type", "compression.type", kmsg.ConfigTypeString, "producer", oneOf("producer"),
		"Riffle stores batches exactly as producers compressed them, so only producer is accepted."},
	{"compression.zstd.level", "compression.zstd.level", kmsg.ConfigTypeInt, "3", intRange(-131072, 22), "Level Kafka recompresses zstd with; Riffle never recompresses." + noEffect},
	{"delete.retention.ms", "log.cleaner.delete.retention.ms", kmsg.ConfigTypeLong, "86400000", intRange(0, maxInt64), "How long a tombstone of a compacted topic is kept after the segment holding it was cleaned."},
	{"errors.deadletterqueue.group.enable", "", kmsg.ConfigTypeBoolean, "false", isBool, "Share group dead-letter queue (KIP-1191)." + noEffect},
	{"file.delete.delay.ms", "log.segment.delete.delay.ms", kmsg.ConfigTypeLong, "60000", intRange(0, maxInt64), "Delay before deleting a file." + noEffect},
	{"flush.messages", "log.flush.interval.messages", kmsg.ConfigTypeLong, strconv.Itoa(maxInt64), intRange(1, maxInt64), "Riffle flushes by its --fsync policy." + noEffect},
	{"flush.ms", "log.flush.interval.ms", kmsg.ConfigTypeLong, strconv.Itoa(maxInt64), intRange(0, maxInt64), "Riffle flushes by its --fsync policy." + noEffect},
	{"follower.replication.throttled.replicas", "", kmsg.ConfigTypeList, "", anyValue, "Replication throttle; Riffle does not replicate partitions." + noEffect},
	{"index.interval.bytes", "log.index.interval.bytes", kmsg.ConfigTypeInt, "4096", intRange(0, maxInt32), "Bytes between entries of the sparse offset index."},
	{"leader.replication.throttled.replicas", "", kmsg.ConfigTypeList, "", anyValue, "Replication throttle; Riffle does not replicate partitions." + noEffect},
	{"local.retention.bytes", "log.local.retention.bytes", kmsg.ConfigTypeLong, "-2", intRange(-2, maxInt64), "Local retention under tiered storage, which Riffle does not have." + noEffect},
	{"local.retention.ms", "log.local.retention.ms", kmsg.ConfigTypeLong, "-2", intRange(-2, maxInt64), "Local retention under tiered storage, which Riffle does not have." + noEffect},
	{"max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", kmsg.ConfigTypeLong, strconv.Itoa(maxInt64), intRange(1, maxInt64), "Longest time a record of a compacted topic stays uncompacted: a partition whose oldest uncleaned record is older is cleaned first, whatever its dirty ratio, and its active segment rolls at this age if segment.ms is longer."},
	{"max.decompressed.message.bytes", "max.decompressed.message.bytes", kmsg.ConfigTypeInt, "2147483639", intRange(0, maxInt32), "Riffle never decompresses batches." + noEffect},
	{"max.message.bytes", "message.max.bytes", kmsg.ConfigTypeInt, "1048588", intRange(0, maxInt32), "Largest record batch a producer may append."},
	{"message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms", kmsg.ConfigTypeLong, "3600000", intRange(0, maxInt64), "Largest time in ms a CreateTime record's timestamp may lie ahead of the broker's clock; later records are refused with INVALID_TIMESTAMP."},
	{"message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms", kmsg.ConfigTypeLong, strconv.Itoa(maxInt64), intRange(0, maxInt64), "Largest time in ms a CreateTime record's timestamp may lie behind the broker's clock; older records are refused with INVALID_TIMESTAMP."},
	{"message.timestamp.type", "log.message.timestamp.type", kmsg.ConfigTypeString, "CreateTime", oneOf("CreateTime", "LogAppendTime"),
		"CreateTime keeps producer timestamps; LogAppendTime stamps batches with the broker's clock on append."},
	{"min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", kmsg.ConfigTypeDouble, "0.5", isDouble, "Part of a compacted partition's rolled segments that must be uncleaned before the cleaner cleans it."},
	{"min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms", kmsg.ConfigTypeLong, "0", intRange(0, maxInt64), "Time a record stays uncompacted after it is written."},
	{"min.insync.replicas", "min.insync.replicas", kmsg.ConfigTypeInt, "1", intRange(1, maxInt32), "Replicas that must acknowledge acks=all; one broker is always enough." + noEffect},
	{"preallocate", "log.preallocate", kmsg.ConfigTypeBoolean, "false", isBool, "Segment preallocation." + noEffect},
	{"remote.copy.lag.bytes", "log.remote.copy.lag.bytes", kmsg.ConfigTypeLong, "-1", intRange(-1, maxInt64), "Tiered storage, which Riffle does not have." + noEffect},
	{"remote.copy.lag.ms", "log.remote.copy.lag.ms", kmsg.ConfigTypeLong, "0", intRange(0, maxInt64), "Tiered storage, which Riffle does not have." + noEffect},
	{"remote.log.copy.disable", "", kmsg.ConfigTypeBoolean, "false", isBool, "Tiered storage, which Riffle does not have." + noEffect},
	{"remote.log.delete.on.disable", "", kmsg.ConfigTypeBoolean, "false", isBool, "Tiered storage, which Riffle does not have." + noEffect},
	{"remote.storage.enable", "", kmsg.ConfigTypeBoolean, "false", oneOf("false"), "Riffle has no tiered storage, so only false is accepted."},
	{"retention.bytes", "log.retention.bytes", kmsg.ConfigTypeLong, "-1", intRange(-1, maxInt64), "Largest size of a partition before its oldest segments are deleted; -1 for no limit."},
	{"retention.ms", "log.retention.ms", kmsg.ConfigTypeLong, "604800000", intRange(-1, maxInt64), "Age after which whole segments are deleted; -1 for no limit."},
	{"segment.bytes", "log.segment.bytes", kmsg.ConfigTypeInt, "1073741824", intRange(14, maxInt32), "Size at which a partition rolls to a new segment file."},
	{"segment.index.bytes", "log.index.size.max.bytes", kmsg.ConfigTypeInt, "10485760", intRange(4, maxInt32), "Index preallocation size." + noEffect},
	{"segment.jitter.ms", "log.roll.jitter.ms", kmsg.ConfigTypeLong, "0", intRange(0, maxInt64), "Roll jitter." + noEffect},
	{"segment.ms", "log.roll.ms", kmsg.ConfigTypeLong, "604800000", intRange(1, maxInt64), "Age at which a partition rolls to a new segment file."},
	{"unclean.leader.election.enable", "unclean.leader.election.enable", kmsg.ConfigTypeBoolean, "false", isBool, "Leader election policy." + noEffect},
}

// groupConfigs are the GROUP resource keys (KIP-848, KIP-932).
var groupConfigs = []configDef{
	{name: "consumer.heartbeat.interval.ms", typ: kmsg.ConfigTypeInt, def: "5000", check: intRange(1, maxInt32), doc: "Heartbeat interval of consumer-protocol members."},
	{name: "consumer.session.timeout.ms", typ: kmsg.ConfigTypeInt, def: "45000", check: intRange(1, maxInt32), doc: "Session timeout of consumer-protocol members."},
	{name: "share.auto.offset.reset", typ: kmsg.ConfigTypeString, def: "latest", check: shareOffsetReset, doc: "Where a share group starts on a partition: latest, earliest, or by_duration:<ISO-8601 duration>."},
	{name: "share.delivery.count.limit", typ: kmsg.ConfigTypeInt, def: "5", check: intRange(2, 10), doc: "Deliveries after which a share group archives a record."},
	{name: "share.heartbeat.interval.ms", typ: kmsg.ConfigTypeInt, def: "5000", check: intRange(1, maxInt32), doc: "Heartbeat interval of share group members."},
	{name: "share.isolation.level", typ: kmsg.ConfigTypeString, def: "read_uncommitted", check: oneOf("read_uncommitted", "read_committed"), doc: "Isolation level of share group fetches."},
	{name: "share.record.lock.duration.ms", typ: kmsg.ConfigTypeInt, def: "30000", check: intRange(1000, 3600000), doc: "How long a share consumer holds an acquired record."},
	{name: "share.session.timeout.ms", typ: kmsg.ConfigTypeInt, def: "45000", check: intRange(1, maxInt32), doc: "Session timeout of share group members."},
}

func shareOffsetReset(v string) error {
	if v == "latest" || v == "earliest" {
		return nil
	}
	if d, ok := strings.CutPrefix(v, "by_duration:"); ok && d != "" {
		return nil
	}
	return fmt.Errorf("%q is not latest, earliest or by_duration:<duration>", v)
}

func findDef(defs []configDef, name string) *configDef {
	i, ok := slices.BinarySearchFunc(defs, name, func(d configDef, n string) int { return strings.Compare(d.name, n) })
	if !ok {
		return nil
	}
	return &defs[i]
}

// brokerDefault returns the topic default set at broker or cluster level.
func brokerDefault(img *metadata.Image, nodeID int32, d *configDef) (string, kmsg.ConfigSource) {
	if d.brokerName != "" {
		if v, ok := img.Configs[metadata.ConfigResource{Type: metadata.ResourceBroker, Name: strconv.Itoa(int(nodeID))}][d.brokerName]; ok {
			return v, kmsg.ConfigSourceDynamicBrokerConfig
		}
		if v, ok := img.Configs[metadata.ConfigResource{Type: metadata.ResourceBroker}][d.brokerName]; ok {
			return v, kmsg.ConfigSourceDynamicDefaultBrokerConfig
		}
	}
	return d.def, kmsg.ConfigSourceDefaultConfig
}

// topicConfig returns a topic's effective value of key on broker nodeID:
// the topic's own value, else the broker's or the cluster-wide default,
// as DescribeConfigs reports it.
func topicConfig(img *metadata.Image, nodeID int32, topic, key string) string {
	if v, ok := img.Configs[metadata.ConfigResource{Type: metadata.ResourceTopic, Name: topic}][key]; ok {
		return v
	}
	v, _ := brokerDefault(img, nodeID, findDef(topicConfigs, key))
	return v
}

// logConfig turns a topic's configs into its logs' settings on broker
// nodeID.
func logConfig(img *metadata.Image, nodeID int32, topic string, policy commitlog.SyncPolicy, log *slog.Logger) commitlog.Config {
	get := func(key string) string { return topicConfig(img, nodeID, topic, key) }
	num := func(key string) int64 {
		n, _ := strconv.ParseInt(get(key), 10, 64)
		return n
	}
	cfg := commitlog.Config{
		SegmentBytes:       num("segment.bytes"),
		SegmentAge:         time.Duration(num("segment.ms")) * time.Millisecond,
		RetentionBytes:     num("retention.bytes"),
		RetentionAge:       time.Duration(num("retention.ms")) * time.Millisecond,
		IndexIntervalBytes: int32(num("index.interval.bytes")),
		MaxBatchBytes:      int32(num("max.message.bytes")),
		LogAppendTime:      get("message.timestamp.type") == "LogAppendTime",
		TimestampBeforeMax: timestampBound(num("message.timestamp.before.max.ms")),
		TimestampAfterMax:  timestampBound(num("message.timestamp.after.max.ms")),
		Sync:               policy,
		Logger:             log.With("topic", topic),
	}
	if num("retention.ms") < 0 {
		cfg.RetentionAge = -1
	}
	policies := strings.Split(get("cleanup.policy"), ",")
	for i, p := range policies {
		policies[i] = strings.TrimSpace(p)
	}
	if !slices.Contains(policies, "delete") {
		cfg.RetentionAge, cfg.RetentionBytes = -1, -1
	}
	cfg.KeyRequired = slices.Contains(policies, "compact")
	cfg.Compact = cfg.KeyRequired
	// Kafka's 0 removes tombstones at the next pass; commitlog reads 0
	// as its default, and 1ms removes what 0 does.
	cfg.DeleteRetention = time.Duration(max(num("delete.retention.ms"), 1)) * time.Millisecond
	cfg.MinCompactionLag = time.Duration(num("min.compaction.lag.ms")) * time.Millisecond
	cfg.MinCleanableDirtyRatio, _ = strconv.ParseFloat(get("min.cleanable.dirty.ratio"), 64)
	// Long.MAX_VALUE, the default, is no bound; so is anything beyond
	// what a Duration holds. A compacted log rolls by the lag too, as
	// Kafka's maxSegmentMs, so that its records become cleanable.
	if ms := num("max.compaction.lag.ms"); ms < math.MaxInt64/int64(time.Millisecond) {
		cfg.MaxCompactionLag = time.Duration(ms) * time.Millisecond
	}
	if cfg.Compact && cfg.MaxCompactionLag > 0 {
		cfg.SegmentAge = min(cfg.SegmentAge, cfg.MaxCompactionLag)
	}
	return cfg
}

// timestampBound turns a message.timestamp.*.max.ms value into a
// commitlog timestamp bound, where 0 means none. Values beyond what a
// Duration holds (about 292 years, Long.MAX_VALUE by default) are no
// bound. Kafka's 0, no skew at all, becomes 1ns: timestamps are whole
// milliseconds, so it refuses every skew that 0 refuses.
func timestampBound(ms int64) time.Duration {
	switch {
	case ms <= 0:
		return time.Nanosecond
	case ms > math.MaxInt64/int64(time.Millisecond):
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// validateConfigs checks proposed values against defs.
func validateConfigs(defs []configDef, kv map[string]*string) error {
	for k, v := range kv {
		d := findDef(defs, k)
		if d == nil {
			return fmt.Errorf("unknown config %q", k)
		}
		if v == nil {
			continue
		}
		if len(*v) > metadata.MaxStringLen {
			return fmt.Errorf("value for %s is %d bytes, more than the %d a config record holds", k, len(*v), metadata.MaxStringLen)
		}
		if err := d.check(*v); err != nil {
			return fmt.Errorf("invalid value for %s: %w", k, err)
		}
	}
	return nil
}

// brokerStatic lists the read-only broker settings DescribeConfigs shows.
func (b *Broker) brokerStatic() []kmsg.DescribeConfigsResponseResourceConfig {
	static := [][2]string{
		{"advertised.listeners", "PLAINTEXT://" + b.host + ":" + strconv.Itoa(int(b.port))},
		{"auto.create.topics.enable", strconv.FormatBool(b.cfg.autoCreateTopics)},
		{"listeners", "PLAINTEXT://" + b.addr},
		{"log.dirs", b.cfg.dataDir},
		{"log.retention.check.interval.ms", strconv.FormatInt(b.cfg.retentionCheck.Milliseconds(), 10)},
		{"node.id", strconv.Itoa(int(b.cfg.nodeID))},
		{"num.partitions", strconv.Itoa(int(b.cfg.numPartitions))},
		{"process.roles", "broker,controller"},
		{"socket.request.max.bytes", strconv.Itoa(int(b.cfg.maxRequestBytes))},
	}
	out := make([]kmsg.DescribeConfigsResponseResourceConfig, 0, len(static))
	for _, kv := range static {
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly = kv[0], kmsg.StringPtr(kv[1]), true
		c.Source = kmsg.ConfigSourceStaticBrokerConfig
		c.ConfigType = kmsg.ConfigTypeString
		out = append(out, c)
	}
	return out
}
