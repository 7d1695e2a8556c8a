// Package metadata is Riffle's cluster metadata quorum. Like Kafka's KRaft
// (KIP-500, KIP-631), cluster metadata is a log of metadata records,
// replicated by a Raft quorum and applied by a state machine into an
// immutable in-memory Image that readers load with one atomic pointer read.
//
// Raft is github.com/hashicorp/raft. Its log and stable store are a Pebble
// database in Config.Dir/raft (package raftstore documents the key layout);
// snapshots are files in Config.Dir/snapshots, two kept.
//
// # Writes
//
// Every change goes through a Store write method (CreateTopic, DeleteTopic,
// CreatePartitions, AlterConfigs, RegisterBroker). The method validates the
// change against the current image, turns it into records, proposes them
// as one raft entry and returns once the entry is applied on this node, so
// the new image is visible on return. The state machine validates each
// record again as it applies it, and applies an entry's records
// atomically: if any record does not fit the image (a topic that already
// exists, a partition of a deleted topic), the whole entry changes nothing
// and the proposer gets the error. Validation depends only on the image, so
// every replica reaches the same decision. Of two concurrent creations of
// one topic, exactly one wins.
//
// # Entry and record encoding
//
// A raft entry's data is one frame. All integers are big endian and
// strings, arrays and nullable strings are encoded as in the Kafka protocol
// (the franz-go kbin functions):
//
//	frame   := version:uint8 (0)  count:int32  record{count}
//	record  := type:int16  version:int16  fields
//
// The record types and their version 0 fields:
//
//	1 ClusterIDRecord       cluster_id:string
//	2 RegisterBrokerRecord  id:int32  host:string  port:int32  rack:string
//	3 TopicRecord           name:string  topic_id:uuid
//	4 PartitionRecord       topic_id:uuid  partition:int32  leader:int32
//	                        leader_epoch:int32  replicas:[]int32  isr:[]int32
//	5 ConfigRecord          resource_type:int8  resource_name:string
//	                        key:string  value:nullable string (null deletes)
//	6 RemoveTopicRecord     topic_id:uuid
//
// A PartitionRecord adds the next partition of its topic; a
// RemoveTopicRecord also drops the topic's configs. CreateTopic is one
// entry of a TopicRecord, its PartitionRecords and its ConfigRecords.
//
// Every string is at most MaxStringLen bytes; the write methods refuse
// longer ones with ErrTooLarge rather than commit a record no one could
// decode.
//
// A frame version, record type or record version this build does not know
// was written by a newer Riffle; other bytes that do not decode are
// corrupt. Either way decoding fails with an error naming the cause, and
// the state machine logs it and skips the whole entry, as it does an entry
// that does not fit the image: the decision depends only on the entry's
// bytes, so every replica makes the same one, and a node never refuses to
// start over one entry. The image then lacks that entry's change. A
// snapshot that cannot be decoded is not skipped, as that would lose the
// whole image (and raft cannot fall back to an older snapshot once the
// entries after it are compacted): Open fails, naming the error.
//
// # Snapshots
//
// A snapshot is the image's Index as an int64 followed by one frame of the
// records that rebuild the image from nothing: the ClusterIDRecord, a
// RegisterBrokerRecord per broker, each topic's TopicRecord and
// PartitionRecords, then a ConfigRecord per set key.
//
// # Starting and growing the quorum
//
// Open on an empty directory bootstraps a quorum whose only voter is this
// node, waits to be elected, and commits a ClusterIDRecord with a new id.
// Open on a used directory restores the latest snapshot and applies the log
// after it; it never bootstraps again. Either way it returns after this node
// leads and has applied the whole log. Config.OnChange sees every image
// from the first, replayed ones included, so a consumer learns of every
// topic removal the log holds; with Config.ClusterID set, images of
// another cluster are refused before OnChange sees them, and Open fails
// with ErrClusterMismatch.
//
// With Config.RaftAddr set, raft speaks TCP on that address and the
// election timings (150ms heartbeat and election timeouts) suit a quorum of
// several voters on one network. Growing the quorum is left to the caller
// of raft's AddVoter on the leader: a new node would open its store without
// bootstrapping (a join mode Config does not offer yet) and the leader would
// call raft.AddVoter with the node's id in decimal and its RaftAddr.
package metadata
