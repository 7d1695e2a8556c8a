package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// unescape turns the escapes \n, \r, \t, \0 and \\ of a delimiter or a
// format into their bytes, as kcat does.
func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i++; i == len(s) {
			return "", fmt.Errorf("%q ends in a lone backslash", s)
		}
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '0':
			b.WriteByte(0)
		case '\\':
			b.WriteByte('\\')
		default:
			return "", fmt.Errorf("%q: unknown escape \\%c (known: \\n \\r \\t \\0 \\\\)", s, s[i])
		}
	}
	return b.String(), nil
}

// template is a compiled record format: literal text and % verbs.
type template []templatePart

// templatePart is literal text, or one verb when verb is set.
type templatePart struct {
	text string
	verb byte
}

// templateVerbs documents the verbs of a consume format.
const templateVerbs = "%k key, %K key length, %v or %s value, %S value length, %t topic, %p partition, " +
	"%o offset, %T timestamp (Unix ms), %h headers (k=v,k=v), %% a percent sign; " +
	`escapes \n \r \t \0 \\`

// parseTemplate compiles a format such as "%k:%v\n".
func parseTemplate(s string) (template, error) {
	s, err := unescape(s)
	if err != nil {
		return nil, err
	}
	var t template
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		if i++; i == len(s) {
			return nil, fmt.Errorf("format %q ends in a lone %%", s)
		}
		switch v := s[i]; v {
		case '%':
			lit.WriteByte('%')
		case 'k', 'K', 'v', 's', 'S', 't', 'p', 'o', 'T', 'h':
			if lit.Len() > 0 {
				t = append(t, templatePart{text: lit.String()})
				lit.Reset()
			}
			t = append(t, templatePart{verb: v})
		default:
			return nil, fmt.Errorf("format %q: unknown verb %%%c (known: %s)", s, v, templateVerbs)
		}
	}
	if lit.Len() > 0 {
		t = append(t, templatePart{text: lit.String()})
	}
	return t, nil
}

// appendRecord appends r formatted by t to b. A null key or value prints
// as nothing and its length as -1, as kcat prints them.
func (t template) appendRecord(b []byte, r *kgo.Record) []byte {
	for _, p := range t {
		switch p.verb {
		case 0:
			b = append(b, p.text...)
		case 'k':
			b = append(b, r.Key...)
		case 'K':
			b = strconv.AppendInt(b, nullableLen(r.Key), 10)
		case 'v', 's':
			b = append(b, r.Value...)
		case 'S':
			b = strconv.AppendInt(b, nullableLen(r.Value), 10)
		case 't':
			b = append(b, r.Topic...)
		case 'p':
			b = strconv.AppendInt(b, int64(r.Partition), 10)
		case 'o':
			b = strconv.AppendInt(b, r.Offset, 10)
		case 'T':
			b = strconv.AppendInt(b, r.Timestamp.UnixMilli(), 10)
		case 'h':
			for i, h := range r.Headers {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, h.Key...)
				b = append(b, '=')
				b = append(b, h.Value...)
			}
		}
	}
	return b
}

func nullableLen(b []byte) int64 {
	if b == nil {
		return -1
	}
	return int64(len(b))
}

// jsonRecord is a record as consume prints it with --output json and as
// produce reads it with --input json. Keys, values and header values are
// strings when they are valid UTF-8; other bytes travel in the _b64
// fields, base64-encoded, so that no byte is lost. A null key or value is
// absent.
type jsonRecord struct {
	Topic     string       `json:"topic,omitempty"`
	Partition *int32       `json:"partition,omitempty"`
	Offset    *int64       `json:"offset,omitempty"`
	Timestamp *int64       `json:"timestamp,omitempty"`
	Key       *string      `json:"key,omitempty"`
	KeyB64    *string      `json:"key_b64,omitempty"`
	Value     *string      `json:"value,omitempty"`
	ValueB64  *string      `json:"value_b64,omitempty"`
	Headers   []jsonHeader `json:"headers,omitempty"`
}

// jsonHeader is one record header of a jsonRecord. A key that is not
// UTF-8 travels in KeyB64.
type jsonHeader struct {
	Key      string  `json:"key"`
	KeyB64   *string `json:"key_b64,omitempty"`
	Value    *string `json:"value,omitempty"`
	ValueB64 *string `json:"value_b64,omitempty"`
}

// encodeBytes sets text or b64 from b, leaving both nil for a nil b.
func encodeBytes(b []byte, text, b64 **string) {
	switch {
	case b == nil:
	case utf8.Valid(b):
		s := string(b)
		*text = &s
	default:
		s := base64.StdEncoding.EncodeToString(b)
		*b64 = &s
	}
}

// decodeBytes is the inverse of encodeBytes.
func decodeBytes(what string, text, b64 *string) ([]byte, error) {
	switch {
	case text != nil && b64 != nil:
		return nil, fmt.Errorf("%s and %s_b64 are both set", what, what)
	case text != nil:
		return []byte(*text), nil
	case b64 != nil:
		b, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("%s_b64: %w", what, err)
		}
		return b, nil
	}
	return nil, nil
}

// appendJSON appends r as one line of JSON.
func appendJSON(b []byte, r *kgo.Record) ([]byte, error) {
	ts := r.Timestamp.UnixMilli()
	j := jsonRecord{Topic: r.Topic, Partition: &r.Partition, Offset: &r.Offset, Timestamp: &ts}
	encodeBytes(r.Key, &j.Key, &j.KeyB64)
	encodeBytes(r.Value, &j.Value, &j.ValueB64)
	for _, h := range r.Headers {
		var jh jsonHeader
		var key *string
		encodeBytes([]byte(h.Key), &key, &jh.KeyB64)
		if key != nil {
			jh.Key = *key
		}
		encodeBytes(h.Value, &jh.Value, &jh.ValueB64)
		if jh.Value == nil && jh.ValueB64 == nil {
			empty := ""
			jh.Value = &empty
		}
		j.Headers = append(j.Headers, jh)
	}
	line, err := json.Marshal(j)
	if err != nil {
		return b, err
	}
	return append(append(b, line...), '\n'), nil
}

// parseJSONRecord reads one line of produce's --input json into r. A
// partition of -1 or none leaves the choice to the partitioner.
func parseJSONRecord(line []byte, r *kgo.Record) error {
	var j jsonRecord
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line")
	}
	var err error
	if r.Key, err = decodeBytes("key", j.Key, j.KeyB64); err != nil {
		return err
	}
	if r.Value, err = decodeBytes("value", j.Value, j.ValueB64); err != nil {
		return err
	}
	for _, h := range j.Headers {
		v, err := decodeBytes("header value", h.Value, h.ValueB64)
		if err != nil {
			return err
		}
		key := []byte(h.Key)
		if h.KeyB64 != nil {
			if h.Key != "" {
				return errors.New("header key and key_b64 are both set")
			}
			if key, err = decodeBytes("header key", nil, h.KeyB64); err != nil {
				return err
			}
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(key), Value: v})
	}
	if j.Partition != nil {
		r.Partition = *j.Partition
	}
	if j.Timestamp != nil {
		r.Timestamp = time.UnixMilli(*j.Timestamp)
	}
	return nil
}
