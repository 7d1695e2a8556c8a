package broker_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestMetadataByTopicID looks topics up by id the way Kafka's Java Admin
// does (describeTopics of a TopicIdCollection): with an empty name beside
// the id, which must not be read as a topic named "".
func TestMetadataByTopicID(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr())
	ctx := testContext(t)
	createTopic(t, kadm.NewClient(cl), "by-id", 2, nil)
	details, err := kadm.NewClient(cl).ListTopics(ctx, "by-id")
	if err != nil {
		t.Fatal(err)
	}
	id := details["by-id"].ID

	for _, name := range []*string{nil, kmsg.StringPtr("")} {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic, rt.TopicID = name, id
		req.Topics = append(req.Topics, rt)
		unknown := kmsg.NewMetadataRequestTopic()
		unknown.Topic, unknown.TopicID = name, [16]byte{1}
		req.Topics = append(req.Topics, unknown)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Topics) != 2 {
			t.Fatalf("name %v: %d topics in the response, want 2", name, len(resp.Topics))
		}
		got := resp.Topics[0]
		if got.ErrorCode != 0 || got.Topic == nil || *got.Topic != "by-id" || got.TopicID != id || len(got.Partitions) != 2 {
			t.Errorf("name %v: by id got error %d, topic %v, %d partitions", name, got.ErrorCode, got.Topic, len(got.Partitions))
		}
		if miss := resp.Topics[1]; miss.ErrorCode != kerr.UnknownTopicID.Code || miss.Topic != nil {
			t.Errorf("name %v: unknown id got error %d, topic %v; want UNKNOWN_TOPIC_ID and no name", name, miss.ErrorCode, miss.Topic)
		}
	}
}
