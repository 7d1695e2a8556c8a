package broker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// metaPropertiesFile names the data directory's identity file. Like
// Kafka's meta.properties it records the cluster and node the directory
// belongs to, so that logs are never served under metadata they were not
// written with.
const metaPropertiesFile = "meta.properties"

// metaPropertiesVersion is the version of the file's layout, Kafka's
// version=1 (the KRaft layout).
const metaPropertiesVersion = 1

// metaProperties is the content of meta.properties.
type metaProperties struct {
	clusterID string
	nodeID    int32
}

// readMetaProperties reads dir's meta.properties; a missing file gives
// the zero value.
func readMetaProperties(dir string) (metaProperties, error) {
	path := filepath.Join(dir, metaPropertiesFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return metaProperties{}, nil
	}
	if err != nil {
		return metaProperties{}, fmt.Errorf("broker: read %s: %w", path, err)
	}
	kv := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return metaProperties{}, fmt.Errorf("broker: %s: line %q is not key=value", path, line)
		}
		kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if v := kv["version"]; v != strconv.Itoa(metaPropertiesVersion) {
		return metaProperties{}, fmt.Errorf("broker: %s: version %q, this build reads %d", path, v, metaPropertiesVersion)
	}
	node, err := strconv.ParseInt(kv["node.id"], 10, 32)
	if err != nil {
		return metaProperties{}, fmt.Errorf("broker: %s: node.id: %w", path, err)
	}
	p := metaProperties{clusterID: kv["cluster.id"], nodeID: int32(node)}
	if p.clusterID == "" {
		return metaProperties{}, fmt.Errorf("broker: %s has no cluster.id", path)
	}
	return p, nil
}

// writeMetaProperties writes dir's meta.properties durably.
func writeMetaProperties(dir string, p metaProperties) error {
	data := fmt.Sprintf("# The cluster and node this data directory belongs to. Written by Riffle; do not edit.\nversion=%d\ncluster.id=%s\nnode.id=%d\n",
		metaPropertiesVersion, p.clusterID, p.nodeID)
	if err := writeFileSync(filepath.Join(dir, metaPropertiesFile), []byte(data)); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}

// checkDataDir refuses a data directory whose parts do not belong
// together, before anything in it is opened: meta.properties of another
// node, or partition logs or meta.properties with an empty metadata/
// (starting would bootstrap a new cluster that knows none of the topics).
// The metadata's cluster id is checked against the returned properties
// when the metadata store opens.
func (b *Broker) checkDataDir() (metaProperties, error) {
	dir := b.cfg.dataDir
	props, err := readMetaProperties(dir)
	if err != nil {
		return props, err
	}
	if props.clusterID != "" && props.nodeID != b.cfg.nodeID {
		return props, fmt.Errorf("broker: data directory %s belongs to node %d (its %s), not %d: start with node id %d, or use another data directory",
			dir, props.nodeID, metaPropertiesFile, b.cfg.nodeID, props.nodeID)
	}
	if has, err := hasEntries(filepath.Join(dir, "metadata")); err != nil || has {
		return props, err
	}
	logs, err := hasEntries(filepath.Join(dir, "logs"))
	if err != nil {
		return props, err
	}
	switch {
	case props.clusterID != "":
		return props, fmt.Errorf("broker: data directory %s belongs to cluster %s (its %s) but its metadata/ is empty: the cluster metadata was lost or moved, and starting would create a new cluster without its topics. Restore %s from a backup; or, to discard this data and start a new cluster, remove %s, %s and %s",
			dir, props.clusterID, metaPropertiesFile, filepath.Join(dir, "metadata"), filepath.Join(dir, "logs"), filepath.Join(dir, "groups"), filepath.Join(dir, metaPropertiesFile))
	case logs:
		return props, fmt.Errorf("broker: data directory %s has partition logs but its metadata/ is empty: the cluster metadata was lost or moved, and starting would create a new cluster without their topics. Restore %s from a backup; or, to discard the logs and start a new cluster, remove %s",
			dir, filepath.Join(dir, "metadata"), filepath.Join(dir, "logs"))
	}
	return props, nil
}

// hasEntries reports whether dir exists and is not empty.
func hasEntries(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("broker: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return true, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("broker: list %s: %w", dir, err)
	}
	return false, nil
}
