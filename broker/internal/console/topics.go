package console

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// Bounds of a records query.
const (
	defaultRecordLimit = 50
	maxRecordLimit     = 500
	// browseWait bounds how long a records query waits for the records it
	// knows exist (below the end offsets it listed first).
	browseWait = 3 * time.Second
	// maxBrowseBytes bounds the keys, values and headers of one answer.
	maxBrowseBytes = 4 << 20
)

type partitionInfo struct {
	Partition   int32   `json:"partition"`
	Leader      int32   `json:"leader"`
	LeaderEpoch int32   `json:"leaderEpoch"`
	Replicas    []int32 `json:"replicas"`
	ISR         []int32 `json:"isr"`
	StartOffset int64   `json:"startOffset"`
	EndOffset   int64   `json:"endOffset"`
	Size        *int64  `json:"size,omitempty"`
	Error       string  `json:"error,omitempty"`
}

type configInfo struct {
	Name      string  `json:"name"`
	Value     *string `json:"value"`
	Source    string  `json:"source"`
	Sensitive bool    `json:"sensitive"`
}

type topicInfo struct {
	Name       string          `json:"name"`
	ID         string          `json:"id"`
	Internal   bool            `json:"internal"`
	Partitions []partitionInfo `json:"partitions"`
	Configs    []configInfo    `json:"configs"`
	ConfigsErr string          `json:"configsError,omitempty"`
	Time       int64           `json:"time"`
}

func (c *console) topic(r *http.Request) (any, error) {
	ctx := r.Context()
	name := r.PathValue("topic")
	d, err := c.describeTopic(ctx, name)
	if err != nil {
		return nil, err
	}
	po, err := c.offsets(ctx, []string{name})
	if err != nil {
		return nil, err
	}
	po.sizes = c.sizes(ctx, kadm.TopicDetails{name: d})
	out := topicInfo{Name: name, ID: d.ID.String(), Internal: d.IsInternal, Time: nowMillis()}
	for _, pd := range d.Partitions.Sorted() {
		pi := partitionInfo{Partition: pd.Partition, Leader: pd.Leader, LeaderEpoch: pd.LeaderEpoch,
			Replicas: pd.Replicas, ISR: pd.ISR, StartOffset: -1, EndOffset: -1, Size: po.size(name, pd.Partition)}
		if pd.Err != nil {
			pi.Error = pd.Err.Error()
		}
		if o, ok := po.start.Lookup(name, pd.Partition); ok && o.Err == nil {
			pi.StartOffset = o.Offset
		}
		if o, ok := po.end.Lookup(name, pd.Partition); ok {
			if o.Err != nil {
				pi.Error = o.Err.Error()
			} else {
				pi.EndOffset = o.Offset
			}
		}
		out.Partitions = append(out.Partitions, pi)
	}
	rcs, err := c.adm.DescribeTopicConfigs(ctx, name)
	if err == nil && len(rcs) == 1 {
		err = rcs[0].Err
	}
	if err != nil {
		out.ConfigsErr = err.Error()
	} else {
		for _, cfg := range rcs[0].Configs {
			out.Configs = append(out.Configs, configInfo{cfg.Key, cfg.Value, cfg.Source.String(), cfg.Sensitive})
		}
		slices.SortFunc(out.Configs, func(a, b configInfo) int { return cmp.Compare(a.Name, b.Name) })
	}
	return out, nil
}

// describeTopic returns a topic's metadata, or a 404 error if the cluster
// does not know it.
func (c *console) describeTopic(ctx context.Context, name string) (kadm.TopicDetail, error) {
	md, err := c.adm.Metadata(ctx, name)
	if err != nil {
		return kadm.TopicDetail{}, fmt.Errorf("metadata: %w", err)
	}
	d, ok := md.Topics[name]
	switch {
	case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
		return kadm.TopicDetail{}, notFound(fmt.Errorf("topic %q: %w", name, kerr.UnknownTopicOrPartition))
	case d.Err != nil:
		return kadm.TopicDetail{}, fmt.Errorf("topic %q: %w", name, d.Err)
	}
	return d, nil
}

// record is one record as the browser shows it: key, value and header
// values are bytes (base64 in JSON, null when absent), which the page
// decodes as text, JSON or hex.
type record struct {
	Partition     int32    `json:"partition"`
	Offset        int64    `json:"offset"`
	Timestamp     int64    `json:"timestamp"`
	TimestampType string   `json:"timestampType"`
	Key           []byte   `json:"key"`
	Value         []byte   `json:"value"`
	Headers       []header `json:"headers"`
}

type header struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

type recordsInfo struct {
	Records []record `json:"records"`
	// Complete is false when the answer stopped short of the records
	// asked for: they did not arrive within the query's wait, or the
	// answer reached its size bound.
	Complete bool  `json:"complete"`
	Time     int64 `json:"time"`
}

// recordQuery is a parsed records query: partition (all when -1), where
// to start (from=offset with offset=N, from=time with time=unix ms or
// RFC 3339, or from=end for the latest records), and limit.
type recordQuery struct {
	partition int32
	from      string
	offset    int64
	time      int64
	limit     int
}

func parseRecordQuery(r *http.Request) (recordQuery, error) {
	q := recordQuery{partition: -1, from: "end", limit: defaultRecordLimit}
	v := r.URL.Query()
	if s := v.Get("partition"); s != "" && s != "all" {
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || p < 0 {
			return q, badRequest(fmt.Errorf("partition %q: want a partition number or all", s))
		}
		q.partition = int32(p)
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxRecordLimit {
			return q, badRequest(fmt.Errorf("limit %q: want 1 to %d", s, maxRecordLimit))
		}
		q.limit = n
	}
	if s := v.Get("from"); s != "" {
		q.from = s
	}
	switch q.from {
	case "end":
	case "offset":
		n, err := strconv.ParseInt(v.Get("offset"), 10, 64)
		if err != nil || n < 0 {
			return q, badRequest(fmt.Errorf("offset %q: want an offset of 0 or more", v.Get("offset")))
		}
		q.offset = n
	case "time":
		s := v.Get("time")
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			q.time = ms
		} else if t, err := time.Parse(time.RFC3339, s); err == nil {
			q.time = t.UnixMilli()
		} else {
			return q, badRequest(fmt.Errorf("time %q: want unix milliseconds or RFC 3339", s))
		}
	default:
		return q, badRequest(fmt.Errorf("from %q: want offset, time or end", q.from))
	}
	return q, nil
}

func (c *console) records(r *http.Request) (any, error) {
	q, err := parseRecordQuery(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	topic := r.PathValue("topic")
	d, err := c.describeTopic(ctx, topic)
	if err != nil {
		return nil, err
	}
	if q.partition >= 0 {
		if _, ok := d.Partitions[q.partition]; !ok {
			return nil, notFound(fmt.Errorf("topic %q has no partition %d", topic, q.partition))
		}
	}
	po, err := c.offsets(ctx, []string{topic})
	if err != nil {
		return nil, err
	}
	var at kadm.ListedOffsets
	if q.from == "time" {
		if at, err = c.adm.ListOffsetsAfterMilli(ctx, q.time, topic); err != nil {
			return nil, fmt.Errorf("list offsets after %d: %w", q.time, err)
		}
	}
	// For every partition asked about: read [from, stop).
	from := map[int32]kgo.Offset{}
	stop := map[int32]int64{}
	for p := range d.Partitions {
		if q.partition >= 0 && p != q.partition {
			continue
		}
		start, sok := po.start.Lookup(topic, p)
		end, eok := po.end.Lookup(topic, p)
		if !sok || !eok || start.Err != nil || end.Err != nil {
			continue
		}
		first := end.Offset
		switch q.from {
		case "end":
			first = end.Offset - int64(q.limit)
		case "offset":
			first = q.offset
		case "time":
			if o, ok := at.Lookup(topic, p); ok && o.Err == nil && o.Offset >= 0 {
				first = o.Offset
			}
		}
		first = max(first, start.Offset)
		if first >= end.Offset {
			continue
		}
		from[p] = kgo.NewOffset().At(first)
		stop[p] = min(end.Offset, first+int64(q.limit))
	}
	out := recordsInfo{Records: []record{}, Complete: true, Time: nowMillis()}
	if len(from) == 0 {
		return out, nil
	}
	recs, complete, err := c.read(ctx, topic, from, stop)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b record) int {
		return cmp.Or(cmp.Compare(a.Timestamp, b.Timestamp), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	if len(recs) > q.limit {
		if q.from == "end" {
			recs = recs[len(recs)-q.limit:]
		} else {
			recs = recs[:q.limit]
		}
	}
	out.Records, out.Complete = recs, complete
	return out, nil
}

// read consumes the partitions of topic from their offsets until each
// reaches its stop offset; if browseWait passes or the records reach
// maxBrowseBytes first, complete is false.
func (c *console) read(ctx context.Context, topic string, from map[int32]kgo.Offset, stop map[int32]int64) (recs []record, complete bool, err error) {
	opts := append(c.reach(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.ClientID("riffle-console"),
		kgo.FetchMaxWait(browseWait),
		kgo.FetchMaxBytes(maxBrowseBytes),
	)
	cons, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, false, fmt.Errorf("consumer: %w", err)
	}
	defer cons.Close()
	ctx, cancel := context.WithTimeout(ctx, browseWait)
	defer cancel()
	left, size := len(stop), 0
	for left > 0 && size < maxBrowseBytes {
		fs := cons.PollFetches(ctx)
		var fetchErr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				fetchErr = err
			}
		})
		if fetchErr != nil {
			return nil, false, fmt.Errorf("fetch %s: %w", topic, fetchErr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := stop[r.Partition]
			if !ok || r.Offset >= end || size >= maxBrowseBytes {
				return
			}
			rec := toRecord(r)
			recs = append(recs, rec)
			size += rec.size()
			if r.Offset+1 >= end {
				delete(stop, r.Partition)
				left--
			}
		})
		if ctx.Err() != nil {
			break
		}
	}
	return recs, left == 0, nil
}

// reach returns the options of the console's client that a consumer
// needs to reach the same cluster the same way: seed brokers, dialer, TLS
// and SASL.
func (c *console) reach() []kgo.Opt {
	var opts []kgo.Opt
	if seeds, ok := c.cl.OptValue(kgo.SeedBrokers).([]string); ok {
		opts = append(opts, kgo.SeedBrokers(seeds...))
	}
	// kgo refuses both a dialer and a TLS config; with a TLS config, the
	// dialer it reports is its own.
	if tc, ok := c.cl.OptValue(kgo.DialTLSConfig).(*tls.Config); ok && tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	} else if dial, ok := c.cl.OptValue(kgo.Dialer).(func(context.Context, string, string) (net.Conn, error)); ok && dial != nil {
		opts = append(opts, kgo.Dialer(dial))
	}
	if ms, ok := c.cl.OptValue(kgo.SASL).([]sasl.Mechanism); ok && len(ms) > 0 {
		opts = append(opts, kgo.SASL(ms...))
	}
	return opts
}

// size counts the bytes of a record's key, value and headers.
func (r record) size() int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

func toRecord(r *kgo.Record) record {
	tt := "CreateTime"
	if r.Attrs.TimestampType() == 1 {
		tt = "LogAppendTime"
	}
	out := record{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), TimestampType: tt,
		Key: r.Key, Value: r.Value, Headers: make([]header, 0, len(r.Headers))}
	for _, h := range r.Headers {
		out.Headers = append(out.Headers, header{h.Key, h.Value})
	}
	return out
}
