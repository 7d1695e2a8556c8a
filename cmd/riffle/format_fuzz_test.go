package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FuzzJSONRecordRoundTrip checks that any record consume prints as JSON
// is read back by produce --input json with the same key, value, headers
// and timestamp, null and non-UTF-8 bytes included.
func FuzzJSONRecordRoundTrip(f *testing.F) {
	f.Add([]byte("k"), []byte("v"), "h", []byte("hv"), false, false, int64(1_700_000_000_000))
	f.Add([]byte{0xff, 0}, []byte{0xc3, 0x28}, "", []byte{}, true, false, int64(0))
	f.Add([]byte{}, []byte("\"quoted\"\n"), "\u2028", []byte("\x00"), false, true, int64(-1))
	f.Fuzz(func(t *testing.T, key, value []byte, hk string, hv []byte, nullKey, nullValue bool, ts int64) {
		if nullKey {
			key = nil
		}
		if nullValue {
			value = nil
		}
		in := &kgo.Record{Topic: "t", Partition: 3, Offset: 9, Key: key, Value: value, Timestamp: time.UnixMilli(ts),
			Headers: []kgo.RecordHeader{{Key: hk, Value: hv}}}
		line, err := appendJSON(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("not one line: %q", line)
		}
		var out kgo.Record
		if err := parseJSONRecord(line[:len(line)-1], &out); err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		if !bytes.Equal(out.Key, in.Key) || (out.Key == nil) != (in.Key == nil) ||
			!bytes.Equal(out.Value, in.Value) || (out.Value == nil) != (in.Value == nil) ||
			out.Timestamp.UnixMilli() != ts || out.Partition != 3 || len(out.Headers) != 1 ||
			out.Headers[0].Key != hk || !bytes.Equal(out.Headers[0].Value, hv) {
			t.Fatalf("%q read back as %+v, was %+v", line, out, in)
		}
	})
}

// FuzzTemplate checks that parsing a format never panics and that a
// format without verbs or escapes prints itself.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{`%k:%v\n`, `%t[%p]@%o %T %h %K %S %%`, `\`, `%`, `\x`, `%q`, "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := parseTemplate(s)
		if err != nil {
			return
		}
		r := &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("b")}}}
		got := string(tmpl.appendRecord(nil, r))
		if !strings.ContainsAny(s, `%\`) && got != s {
			t.Fatalf("format %q printed %q", s, got)
		}
	})
}

// FuzzParseSample checks that any exposition line is parsed or refused
// without a panic, and that labels written as Prometheus escapes them
// read back.
func FuzzParseSample(f *testing.F) {
	f.Add(`partition="0",topic="orders"} 0.25`, "orders")
	f.Add(`topic="a\"b\\c\nd"} 1 1700000000000`, "x")
	f.Add(`topic="unterminated} 1`, "")
	f.Fuzz(func(t *testing.T, line, topic string) {
		parseSample(line)
		esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(topic)
		labels, v, err := parseSample(`topic="` + esc + `",partition="7"} 0.5`)
		if err != nil || labels["topic"] != topic || labels["partition"] != "7" || v != 0.5 {
			t.Fatalf("topic %q: labels %q value %v err %v", topic, labels, v, err)
		}
	})
}
