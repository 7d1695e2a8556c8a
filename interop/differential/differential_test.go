// Package differential sends the same requests to Riffle's broker and to a
// real Apache Kafka broker (internal/kafkatest) and compares the responses
// field by field. Every difference is either a bug or one of the
// documented choices listed with each comparison (and in README.md's
// compatibility section).
//
// It needs java and the Kafka jars (see internal/kafkatest); without them
// the tests skip, unless RIFFLE_INTEROP_REQUIRED=1.
package differential

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// topicName derives a topic or group name from the test's name, so that
// tests sharing the Kafka broker do not meet.
func topicName(t *testing.T, suffix string) string {
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return name + "-" + suffix
}

func createTopicReq(topic string, partitions int32, configs map[string]string) func() kmsg.Request {
	return func() kmsg.Request {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.TimeoutMillis = 10_000
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic = topic
		rt.NumPartitions = partitions
		rt.ReplicationFactor = 1
		for k, v := range configs {
			c := kmsg.NewCreateTopicsRequestTopicConfig()
			c.Name, c.Value = k, kmsg.StringPtr(v)
			rt.Configs = append(rt.Configs, c)
		}
		req.Topics = append(req.Topics, rt)
		return req
	}
}

// createTopic creates the same topic on both brokers and waits until both
// list its partitions with a leader.
func (p *pair) createTopic(t *testing.T, topic string, partitions int32, configs map[string]string) {
	t.Helper()
	r, k := p.both(t, createTopicReq(topic, partitions, configs))
	for name, resp := range map[string]any{"riffle": r, "kafka": k} {
		if code := resp.(map[string]any)["Topics"].([]any)[0].(map[string]any)["ErrorCode"]; fmt.Sprint(code) != "0" {
			t.Fatalf("%s: create %s: error code %v", name, topic, code)
		}
	}
	for _, cl := range []*kgo.Client{p.riffle, p.kafka} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			req := kmsg.NewPtrMetadataRequest()
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(topic)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(context.Background(), cl)
			if err == nil && len(resp.Topics) == 1 && resp.Topics[0].ErrorCode == 0 &&
				len(resp.Topics[0].Partitions) == int(partitions) && resp.Topics[0].Partitions[0].Leader >= 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("topic %s not ready: %v %+v", topic, err, resp)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// produce writes records with the given timestamps (milliseconds) to
// partition 0 of topic on both brokers.
func (p *pair) produce(t *testing.T, topic string, timestamps ...int64) {
	t.Helper()
	for _, cl := range []*kgo.Client{p.riffle, p.kafka} {
		for _, ts := range timestamps {
			r := &kgo.Record{Topic: topic, Partition: 0, Value: []byte("v"), Timestamp: time.UnixMilli(ts)}
			if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
				t.Fatalf("produce to %s: %v", topic, err)
			}
		}
	}
}

func TestApiVersions(t *testing.T) {
	p := newPair(t)
	type rng struct{ min, max int16 }
	ranges := func(resp *kmsg.ApiVersionsResponse) map[int16]rng {
		m := make(map[int16]rng)
		for _, k := range resp.ApiKeys {
			m[k.ApiKey] = rng{k.MinVersion, k.MaxVersion}
		}
		return m
	}
	r, k := ranges(p.riffleVersions), ranges(p.kafkaVersions)
	var missing []string
	for key, kr := range k {
		rr, ok := r[key]
		name := kmsg.NameForKey(key)
		if !ok {
			missing = append(missing, name)
			continue
		}
		switch {
		case rr.max > kr.max:
			t.Errorf("%s: Riffle serves up to v%d, Kafka only up to v%d", name, rr.max, kr.max)
		case rr.min < kr.min:
			if reason, ok := olderMinVersions[name]; ok {
				t.Logf("documented difference: %s: Riffle serves from v%d, Kafka from v%d (%s)", name, rr.min, kr.min, reason)
			} else {
				t.Errorf("%s: Riffle serves from v%d, Kafka only from v%d", name, rr.min, kr.min)
			}
		case rr.min > kr.min:
			if reason, ok := higherMinVersions[name]; ok {
				t.Logf("documented difference: %s: Riffle serves from v%d, Kafka advertises v%d (%s)", name, rr.min, kr.min, reason)
			} else {
				t.Errorf("%s: Riffle serves from v%d, Kafka already from v%d", name, rr.min, kr.min)
			}
		case rr.max < kr.max:
			t.Logf("documented difference: %s: Riffle serves up to v%d, Kafka up to v%d", name, rr.max, kr.max)
		}
	}
	for key := range r {
		if _, ok := k[key]; !ok {
			t.Errorf("%s: Riffle serves it, Kafka 4 does not", kmsg.NameForKey(key))
		}
	}
	slices.Sort(missing)
	t.Logf("documented difference: Kafka serves %d keys Riffle does not: %s", len(missing), strings.Join(missing, ", "))

	features := func(resp *kmsg.ApiVersionsResponse) map[string]string {
		m := make(map[string]string)
		for _, f := range resp.SupportedFeatures {
			m[f.Name] = fmt.Sprintf("%d-%d", f.MinVersion, f.MaxVersion)
		}
		return m
	}
	rf, kf := features(p.riffleVersions), features(p.kafkaVersions)
	for name, v := range rf {
		if _, ok := kf[name]; !ok {
			t.Errorf("feature %s (%s): Riffle lists it, Kafka does not", name, v)
		}
	}
	t.Logf("supported features: riffle %v, kafka %v", rf, kf)
}

// higherMinVersions are requests whose lowest version Riffle advertises
// above Kafka's.
var higherMinVersions = map[string]string{
	"Produce": "Kafka 4 still advertises v0 for old librdkafka (KAFKA-18659) but refuses v0-v2 (KIP-896); Riffle advertises what it serves",
}

// olderMinVersions are requests Riffle still serves at versions Kafka 4
// dropped (KIP-896); a client that sends them gets an answer rather than
// UNSUPPORTED_VERSION.
var olderMinVersions = map[string]string{}

func TestMetadataShape(t *testing.T) {
	p := newPair(t)
	topic := topicName(t, "t")
	p.createTopic(t, topic, 3, nil)
	r, k := p.both(t, func() kmsg.Request {
		req := kmsg.NewPtrMetadataRequest()
		for _, name := range []string{topic, topicName(t, "unknown")} {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, rt)
		}
		req.AllowAutoTopicCreation = false
		return req
	})
	for _, v := range []any{r, k} {
		keyBy(v, "Topics", "Topic")
		keyBy(v, "Topics.*.Partitions", "Partition")
	}
	compare(t, "Metadata", r, k, map[string]string{
		"Brokers[0].Host": "",
	})
}

func TestCreateTopicsErrors(t *testing.T) {
	p := newPair(t)
	existing := topicName(t, "exists")
	p.createTopic(t, existing, 1, nil)
	long := strings.Repeat("x", 250)
	cases := []struct {
		name       string
		topic      string
		partitions int32
		rf         int16
		configs    map[string]string
	}{
		{"empty name", "", 1, 1, nil},
		{"dot", ".", 1, 1, nil},
		{"dot dot", "..", 1, 1, nil},
		{"slash", "a/b", 1, 1, nil},
		{"space", "a b", 1, 1, nil},
		{"too long", long, 1, 1, nil},
		{"zero partitions", topicName(t, "p0"), 0, 1, nil},
		{"negative partitions", topicName(t, "pneg"), -5, 1, nil},
		{"default partitions", topicName(t, "pdef"), -1, -1, nil},
		{"replication too high", topicName(t, "rf3"), 1, 3, nil},
		{"replication zero", topicName(t, "rf0"), 1, 0, nil},
		{"unknown config", topicName(t, "cfgunknown"), 1, 1, map[string]string{"no.such.config": "1"}},
		{"bad config value", topicName(t, "cfgbad"), 1, 1, map[string]string{"retention.ms": "soon"}},
		{"bad cleanup policy", topicName(t, "cfgpolicy"), 1, 1, map[string]string{"cleanup.policy": "bogus"}},
		{"existing", existing, 1, 1, nil},
		{"kafka-only config", topicName(t, "cfgkafka"), 1, 1, map[string]string{"compression.zstd.level": "3"}},
		{"tiered storage off", topicName(t, "cfgtiered"), 1, 1, map[string]string{"remote.storage.enable": "false"}},
	}
	for _, validateOnly := range []bool{true, false} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/validateOnly=%v", c.name, validateOnly), func(t *testing.T) {
				r, k := p.both(t, func() kmsg.Request {
					req := kmsg.NewPtrCreateTopicsRequest()
					req.TimeoutMillis = 10_000
					req.ValidateOnly = validateOnly
					rt := kmsg.NewCreateTopicsRequestTopic()
					rt.Topic = c.topic
					rt.NumPartitions = c.partitions
					rt.ReplicationFactor = c.rf
					for k, v := range c.configs {
						cfg := kmsg.NewCreateTopicsRequestTopicConfig()
						cfg.Name, cfg.Value = k, kmsg.StringPtr(v)
						rt.Configs = append(rt.Configs, cfg)
					}
					req.Topics = append(req.Topics, rt)
					return req
				})
				for _, v := range []any{r, k} {
					keyBy(v, "Topics.*.Configs", "Name")
				}
				compare(t, "CreateTopics", r, k, createTopicsDocumented)
			})
		}
	}
	t.Run("duplicate in one request", func(t *testing.T) {
		name := topicName(t, "dup")
		r, k := p.both(t, func() kmsg.Request {
			req := kmsg.NewPtrCreateTopicsRequest()
			req.TimeoutMillis = 10_000
			for range 2 {
				rt := kmsg.NewCreateTopicsRequestTopic()
				rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, 1, 1
				req.Topics = append(req.Topics, rt)
			}
			return req
		})
		compare(t, "CreateTopics", r, k, createTopicsDocumented)
	})
}

// minISRSource: Kafka 4's storage tool formats a cluster with a dynamic
// cluster-wide default min.insync.replicas (for eligible leader replicas,
// KIP-966); Riffle has no dynamic broker defaults unless set.
const minISRSource = "Kafka's format writes a cluster-wide dynamic min.insync.replicas default (KIP-966)"

// documentedConfigs returns the allow-list for topic configs under prefix
// (the path of the config map), plus extra entries.
func documentedConfigs(prefix string, extra map[string]string) map[string]string {
	m := map[string]string{
		prefix + "[min.insync.replicas].Source":          minISRSource,
		prefix + "[min.insync.replicas].ConfigSynonyms*": minISRSource,
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// createTopicsDocumented are the deliberate differences in CreateTopics
// answers.
var createTopicsDocumented = documentedConfigs("Topics[0].Configs", map[string]string{
	"Topics[0].TopicID": "Riffle gives no id to a topic it only validated (validateOnly); Kafka returns the id it would have used",
})

func TestCreatePartitionsErrors(t *testing.T) {
	p := newPair(t)
	topic := topicName(t, "t")
	p.createTopic(t, topic, 2, nil)
	for _, c := range []struct {
		name  string
		topic string
		count int32
	}{
		{"fewer", topic, 1},
		{"same", topic, 2},
		{"unknown topic", topicName(t, "unknown"), 3},
		{"more", topic, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, k := p.both(t, func() kmsg.Request {
				req := kmsg.NewPtrCreatePartitionsRequest()
				req.TimeoutMillis = 10_000
				rt := kmsg.NewCreatePartitionsRequestTopic()
				rt.Topic, rt.Count = c.topic, c.count
				req.Topics = append(req.Topics, rt)
				return req
			})
			compare(t, "CreatePartitions", r, k, nil)
		})
	}
}

func TestDescribeConfigsTopic(t *testing.T) {
	p := newPair(t)
	plain, tuned := topicName(t, "plain"), topicName(t, "tuned")
	p.createTopic(t, plain, 1, nil)
	p.createTopic(t, tuned, 1, map[string]string{"retention.ms": "3600000", "cleanup.policy": "compact"})
	for _, topic := range []string{plain, tuned} {
		r, k := p.both(t, func() kmsg.Request {
			req := kmsg.NewPtrDescribeConfigsRequest()
			req.IncludeSynonyms = true
			rr := kmsg.NewDescribeConfigsRequestResource()
			rr.ResourceType = kmsg.ConfigResourceTypeTopic
			rr.ResourceName = topic
			req.Resources = append(req.Resources, rr)
			return req
		})
		for _, v := range []any{r, k} {
			keyBy(v, "Resources.*.Configs", "Name")
		}
		compare(t, "DescribeConfigs "+topic, r, k, describeConfigsDocumented)
	}
	for name, resource := range map[string]string{
		"unknown topic":    topicName(t, "unknown"),
		"bad topic name":   "a/b",
		"empty topic name": "",
	} {
		t.Run(name, func(t *testing.T) {
			r, k := p.both(t, func() kmsg.Request {
				req := kmsg.NewPtrDescribeConfigsRequest()
				rr := kmsg.NewDescribeConfigsRequestResource()
				rr.ResourceType = kmsg.ConfigResourceTypeTopic
				rr.ResourceName = resource
				req.Resources = append(req.Resources, rr)
				return req
			})
			compare(t, "DescribeConfigs", r, k, nil)
		})
	}
}

// nullDefaultSynonym: Kafka's log.retention.ms, log.roll.ms,
// log.roll.jitter.ms and log.flush.interval.ms default to null (the
// effective value derives from the hours settings or Long.MAX), so Kafka
// lists no DEFAULT_CONFIG synonym for them; Riffle lists the effective
// default.
const nullDefaultSynonym = "Riffle lists the effective broker default as a DEFAULT_CONFIG synonym where Kafka's broker setting defaults to null"

// describeConfigsDocumented are the deliberate differences in topic
// configs.
var describeConfigsDocumented = documentedConfigs("Resources[0].Configs", map[string]string{
	"Resources[0].Configs[retention.ms].ConfigSynonyms*":      nullDefaultSynonym,
	"Resources[0].Configs[segment.ms].ConfigSynonyms*":        nullDefaultSynonym,
	"Resources[0].Configs[segment.jitter.ms].ConfigSynonyms*": nullDefaultSynonym,
	"Resources[0].Configs[flush.ms].ConfigSynonyms*":          nullDefaultSynonym,
})

func TestListOffsetsEdges(t *testing.T) {
	p := newPair(t)
	empty, filled := topicName(t, "empty"), topicName(t, "filled")
	p.createTopic(t, empty, 1, nil)
	p.createTopic(t, filled, 1, nil)
	p.produce(t, filled, 1000, 3000, 2000)
	const (
		latest       = -1
		earliest     = -2
		maxTimestamp = -3
		earliestLoc  = -4
		latestTiered = -5
	)
	for _, c := range []struct {
		name      string
		topic     string
		partition int32
		timestamp int64
	}{
		{"empty latest", empty, 0, latest},
		{"empty earliest", empty, 0, earliest},
		{"empty max timestamp", empty, 0, maxTimestamp},
		{"empty earliest local", empty, 0, earliestLoc},
		{"empty latest tiered", empty, 0, latestTiered},
		{"empty by time", empty, 0, 500},
		{"unknown partition", empty, 7, latest},
		{"unknown topic", topicName(t, "unknown"), 0, latest},
		{"latest", filled, 0, latest},
		{"earliest", filled, 0, earliest},
		{"max timestamp", filled, 0, maxTimestamp},
		{"earliest local", filled, 0, earliestLoc},
		{"latest tiered", filled, 0, latestTiered},
		{"before every record", filled, 0, 10},
		{"exact timestamp", filled, 0, 2000},
		{"between timestamps", filled, 0, 2500},
		{"after every record", filled, 0, 5000},
		{"unknown negative timestamp", filled, 0, -42},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, k := p.both(t, func() kmsg.Request {
				req := kmsg.NewPtrListOffsetsRequest()
				req.ReplicaID = -1
				rt := kmsg.NewListOffsetsRequestTopic()
				rt.Topic = c.topic
				rp := kmsg.NewListOffsetsRequestTopicPartition()
				rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = c.partition, c.timestamp, -1
				rt.Partitions = append(rt.Partitions, rp)
				req.Topics = append(req.Topics, rt)
				return req
			})
			compare(t, "ListOffsets", r, k, nil)
		})
	}
}

func TestIncrementalAlterConfigsErrors(t *testing.T) {
	p := newPair(t)
	topic := topicName(t, "t")
	p.createTopic(t, topic, 1, nil)
	const (
		set      = 0
		del      = 1
		appendOp = 2
	)
	for _, c := range []struct {
		name     string
		resource string
		op       int8
		key      string
		value    *string
	}{
		{"set retention", topic, set, "retention.ms", kmsg.StringPtr("1000")},
		{"unknown config", topic, set, "no.such.config", kmsg.StringPtr("1")},
		{"bad value", topic, set, "retention.ms", kmsg.StringPtr("soon")},
		{"delete unset config", topic, del, "segment.ms", nil},
		{"append to a non-list", topic, appendOp, "retention.ms", kmsg.StringPtr("5")},
		{"unknown topic", topicName(t, "unknown"), set, "retention.ms", kmsg.StringPtr("1000")},
		{"bad topic name", "a/b", set, "retention.ms", kmsg.StringPtr("1000")},
		{"empty topic name", "", set, "retention.ms", kmsg.StringPtr("1000")},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, k := p.both(t, func() kmsg.Request {
				req := kmsg.NewPtrIncrementalAlterConfigsRequest()
				rr := kmsg.NewIncrementalAlterConfigsRequestResource()
				rr.ResourceType, rr.ResourceName = kmsg.ConfigResourceTypeTopic, c.resource
				cfg := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
				cfg.Name, cfg.Op, cfg.Value = c.key, kmsg.IncrementalAlterConfigOp(c.op), c.value
				rr.Configs = append(rr.Configs, cfg)
				req.Resources = append(req.Resources, rr)
				return req
			})
			compare(t, "IncrementalAlterConfigs", r, k, nil)
		})
	}
}

func TestDeleteTopicsErrors(t *testing.T) {
	p := newPair(t)
	topic := topicName(t, "t")
	p.createTopic(t, topic, 1, nil)
	for _, c := range []struct {
		name  string
		topic string
	}{
		{"existing", topic},
		{"deleted again", topic},
		{"unknown", topicName(t, "unknown")},
		{"bad name", "a/b"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, k := p.both(t, func() kmsg.Request {
				req := kmsg.NewPtrDeleteTopicsRequest()
				req.TimeoutMillis = 10_000
				rt := kmsg.NewDeleteTopicsRequestTopic()
				rt.Topic = kmsg.StringPtr(c.topic)
				req.Topics = append(req.Topics, rt)
				return req
			})
			compare(t, "DeleteTopics", r, k, nil)
		})
	}
}

// topicIDs returns each broker's id for topic (Fetch v13+ names topics by
// id).
func (p *pair) topicIDs(t *testing.T, topic string) [2][16]byte {
	t.Helper()
	var ids [2][16]byte
	for s := range []side{onRiffle, onKafka} {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp := p.send(t, side(s), req).(*kmsg.MetadataResponse)
		ids[s] = resp.Topics[0].TopicID
	}
	return ids
}

func TestFetchEdges(t *testing.T) {
	p := newPair(t)
	empty, filled := topicName(t, "empty"), topicName(t, "filled")
	p.createTopic(t, empty, 1, nil)
	p.createTopic(t, filled, 1, nil)
	p.produce(t, filled, 1000, 2000, 3000)
	emptyIDs, filledIDs := p.topicIDs(t, empty), p.topicIDs(t, filled)
	for _, c := range []struct {
		name      string
		ids       *[2][16]byte
		partition int32
		offset    int64
	}{
		{"empty at 0", &emptyIDs, 0, 0},
		{"empty past the end", &emptyIDs, 0, 5},
		{"unknown partition", &emptyIDs, 3, 0},
		{"unknown topic id", &[2][16]byte{{1, 2, 3}, {1, 2, 3}}, 0, 0},
		{"filled from 0", &filledIDs, 0, 0},
		{"filled at the end", &filledIDs, 0, 3},
		{"filled past the end", &filledIDs, 0, 4},
		{"negative offset", &filledIDs, 0, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, k := p.bothFor(t, func(s side) kmsg.Request {
				req := kmsg.NewPtrFetchRequest()
				req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, 10, 1, 1<<20
				req.SessionEpoch = -1
				rt := kmsg.NewFetchRequestTopic()
				rt.TopicID = c.ids[s]
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = c.partition, c.offset, 1<<20
				rp.CurrentLeaderEpoch, rp.LastFetchedEpoch, rp.LogStartOffset = -1, -1, -1
				rt.Partitions = append(rt.Partitions, rp)
				req.Topics = append(req.Topics, rt)
				return req
			})
			rt, kt := trees(t, r, k)
			documented := fetchDocumented
			if r.(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode == kerr.OffsetOutOfRange.Code {
				documented = fetchOutOfRangeDocumented
			}
			compare(t, "Fetch", rt, kt, documented)
			rb := r.(*kmsg.FetchResponse).Topics[0].Partitions[0].RecordBatches
			kb := k.(*kmsg.FetchResponse).Topics[0].Partitions[0].RecordBatches
			if len(rb) != len(kb) {
				t.Errorf("Fetch returned %d bytes of batches from riffle, %d from kafka", len(rb), len(kb))
			}
		})
	}
}

// outOfRangeBounds: with OFFSET_OUT_OF_RANGE Kafka answers -1 for the high
// watermark, last stable offset and log start offset; Riffle reports the
// partition's real bounds. Clients reset by ListOffsets either way.
const outOfRangeBounds = "Riffle reports the partition's bounds with OFFSET_OUT_OF_RANGE where Kafka answers -1"

// fetchDocumented are the deliberate differences in Fetch answers: none
// but the batches, which carry each broker's producer id (their sizes are
// compared separately).
var fetchDocumented = map[string]string{
	"Topics[0].Partitions[0].RecordBatches": "",
}

// fetchOutOfRangeDocumented are those of an OFFSET_OUT_OF_RANGE answer.
var fetchOutOfRangeDocumented = map[string]string{
	"Topics[0].Partitions[0].RecordBatches":    "",
	"Topics[0].Partitions[0].HighWatermark":    outOfRangeBounds,
	"Topics[0].Partitions[0].LastStableOffset": outOfRangeBounds,
	"Topics[0].Partitions[0].LogStartOffset":   outOfRangeBounds,
}
