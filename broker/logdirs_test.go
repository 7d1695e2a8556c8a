package broker_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestDescribeLogDirs asks for every partition (a null topic list), for
// some, and for none: the broker answers with its one log directory, its
// space, and the bytes of batches on disk of each partition it holds, leaving out
// partitions it does not hold.
func TestDescribeLogDirs(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	cl := newClient(t, b.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "a", 2, nil)
	createTopic(t, adm, "b", 1, nil)
	ctx := testContext(t)
	for i := range 3 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "a", Partition: 0, Value: []byte(strings.Repeat("x", 100*(i+1)))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	onDisk := int64(0)
	segments, err := filepath.Glob(filepath.Join(dir, "logs", "a-0", "*.log"))
	if err != nil || len(segments) == 0 {
		t.Fatalf("segments of a-0: %v %v", segments, err)
	}
	for _, s := range segments {
		// The batches, not the zeros written ahead of them in the active
		// segment: Kafka does not count a preallocated segment's either.
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for len(b) >= 12 && binary.BigEndian.Uint32(b[8:]) > 0 {
			n := 12 + int64(binary.BigEndian.Uint32(b[8:]))
			onDisk += n
			b = b[min(n, int64(len(b))):]
		}
	}

	describe := func(topics []kmsg.DescribeLogDirsRequestTopic) kmsg.DescribeLogDirsResponseDir {
		t.Helper()
		req := kmsg.NewPtrDescribeLogDirsRequest()
		req.Topics = topics
		// Straight to the broker: franz-go would shard the request by
		// partition and merge the answers without the space fields.
		kresp, err := cl.Broker(1).Request(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		resp := kresp.(*kmsg.DescribeLogDirsResponse)
		if resp.ErrorCode != 0 || len(resp.Dirs) != 1 || resp.Dirs[0].ErrorCode != 0 {
			t.Fatalf("DescribeLogDirs: %+v", resp)
		}
		return resp.Dirs[0]
	}
	sizes := func(d kmsg.DescribeLogDirsResponseDir) map[string]int64 {
		m := map[string]int64{}
		for _, tp := range d.Topics {
			for _, p := range tp.Partitions {
				if p.OffsetLag != 0 || p.IsFuture {
					t.Errorf("%s-%d: offset lag %d, future %v", tp.Topic, p.Partition, p.OffsetLag, p.IsFuture)
				}
				m[tp.Topic+"-"+strconv.Itoa(int(p.Partition))] = p.Size
			}
		}
		return m
	}

	all := describe(nil)
	abs, err := filepath.Abs(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	if all.Dir != abs || all.TotalBytes <= 0 || all.UsableBytes < 0 || all.UsableBytes > all.TotalBytes {
		t.Fatalf("dir %q total %d usable %d; want %q", all.Dir, all.TotalBytes, all.UsableBytes, abs)
	}
	got := sizes(all)
	if len(got) != 3 || got["a-0"] != onDisk || got["a-1"] != 0 || got["b-0"] != 0 {
		t.Fatalf("sizes of every partition %v, want a-0 %d and two empty", got, onDisk)
	}

	some := []kmsg.DescribeLogDirsRequestTopic{{Topic: "a", Partitions: []int32{0, 5}}, {Topic: "missing", Partitions: []int32{0}}}
	if got := sizes(describe(some)); len(got) != 1 || got["a-0"] != onDisk {
		t.Fatalf("sizes of a-0, a-5 and missing-0: %v", got)
	}
	if d := describe([]kmsg.DescribeLogDirsRequestTopic{}); len(d.Topics) != 0 || d.Dir != abs {
		t.Fatalf("an empty topic list: %+v", d)
	}
}
