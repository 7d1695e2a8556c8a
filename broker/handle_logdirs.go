package broker

import (
	"cmp"
	"context"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDescribeLogDirs reports the broker's one log directory and the
// size on disk of the partitions it holds, as Kafka's replica manager
// does: a null topic list asks for every partition, and partitions the
// broker does not hold are left out rather than answered with an error.
// Riffle has no future replicas (no AlterReplicaLogDirs), so OffsetLag is
// always 0 and IsFuture false, and never cordons its directory (v5's
// IsCordoned). A partition whose log is offline is left
// out too: Kafka reports the whole directory as KAFKA_STORAGE_ERROR, but
// Riffle takes single partitions offline and keeps serving the rest.
func (b *Broker) handleDescribeLogDirs(_ context.Context, req *kmsg.DescribeLogDirsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeLogDirsResponse)
	dir := kmsg.NewDescribeLogDirsResponseDir()
	dir.Dir = b.parts.dir
	if abs, err := filepath.Abs(dir.Dir); err == nil {
		dir.Dir = abs
	}
	dir.TotalBytes, dir.UsableBytes = -1, -1
	var st syscall.Statfs_t
	if err := syscall.Statfs(b.parts.dir, &st); err == nil {
		dir.TotalBytes = int64(st.Blocks) * int64(st.Bsize)
		dir.UsableBytes = int64(st.Bavail) * int64(st.Bsize)
	} else {
		b.log.Warn("describe log dirs: statfs", "dir", b.parts.dir, "err", err)
	}

	img := b.meta.Image()
	wanted := req.Topics
	if wanted == nil {
		for name, t := range img.Topics {
			rt := kmsg.NewDescribeLogDirsRequestTopic()
			rt.Topic = name
			for _, p := range t.Partitions {
				rt.Partitions = append(rt.Partitions, p.Index)
			}
			wanted = append(wanted, rt)
		}
		slices.SortFunc(wanted, func(x, y kmsg.DescribeLogDirsRequestTopic) int { return cmp.Compare(x.Topic, y.Topic) })
	}
	for _, rt := range wanted {
		t := kmsg.NewDescribeLogDirsResponseDirTopic()
		t.Topic = rt.Topic
		for _, index := range rt.Partitions {
			p, failure := b.parts.lookup(img, rt.Topic, index)
			if failure != nil {
				continue
			}
			rp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			rp.Partition, rp.Size = index, p.log.Size()
			t.Partitions = append(t.Partitions, rp)
		}
		if len(t.Partitions) > 0 {
			dir.Topics = append(dir.Topics, t)
		}
	}
	resp.Dirs = append(resp.Dirs, dir)
	return resp
}
