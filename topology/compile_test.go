package topology_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// compile builds a main package made of src with the go command, in this
// module, and returns the compiler's output and whether it succeeded.
func compile(t *testing.T, src string) (string, bool) {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to compile with")
	}
	file := filepath.Join(t.TempDir(), "main.go")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goCmd, "build", "-o", os.DevNull, file).CombinedOutput()
	return string(out), err == nil
}

const misuseHeader = `package main

import (
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/topology"
)

func main() {
	b := topology.NewBuilder()
	s := topology.FromTopics[string, string](b, []string{"in"})
	keep := func(_, _ string) bool { return true }
	_, _ = s, keep
`

// TestMisusedOptionsAndSerdesDoNotCompile proves the option families and
// typed serdes at compile time: each misuse is a compiler error, while the
// same program without them builds.
func TestMisusedOptionsAndSerdesDoNotCompile(t *testing.T) {
	if out, ok := compile(t, misuseHeader+`
	s.Filter(keep, topology.Named("f")).WithValueSerde(serde.String()).To("out", topology.WithPartitioner(nil))
	s.GroupByKey(topology.Named("g")).Count(topology.Materialized("c"))
}
`); !ok {
		t.Fatalf("the well-typed program does not build:\n%s", out)
	}
	misuses := map[string]string{
		`s.Filter(keep, topology.Materialized("x"))`:                                       "MaterializeOpt does not implement topology.StreamOpt",
		`s.To("out", topology.NumPartitions(3))`:                                           "RepartitionOpt does not implement topology.SinkOpt",
		`s.Filter(keep, topology.WithStores("st"))`:                                        "ProcessOpt does not implement topology.StreamOpt",
		`s.WithValueSerde(serde.Int64())`:                                                  "cannot use serde.Int64()",
		`topology.FromTopicsWith[string, string](b, nil, serde.String(), serde.Float64())`: "cannot use serde.Float64()",
	}
	var body strings.Builder
	for line := range misuses {
		body.WriteString("\t" + line + "\n")
	}
	out, ok := compile(t, misuseHeader+body.String()+"}\n")
	if ok {
		t.Fatal("the misuses compiled")
	}
	for line, want := range misuses {
		if !strings.Contains(out, want) {
			t.Errorf("%s: compiler output lacks %q:\n%s", line, want, out)
		}
	}
}
