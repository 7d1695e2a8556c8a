package state

import "testing"

// TestRowCacheFillAfterWrite checks that a value a read found in Pebble
// is not cached when a write to the store came after the read's miss: the
// interleaving of an interactive query's Get with the task's Put or
// Delete of the same key.
func TestRowCacheFillAfterWrite(t *testing.T) {
	k := []byte("k")
	c := newRowCache()
	_, version, ok := c.get(k)
	if ok {
		t.Fatal("hit in an empty cache")
	}
	c.write(k, []byte("new"), false)
	c.fill(k, []byte("old"), version)
	if v, _, _ := c.get(k); string(v) != "new" {
		t.Fatalf("after a Put raced a read, cached %q, want \"new\"", v)
	}

	c = newRowCache()
	_, version, _ = c.get(k)
	c.write(k, nil, true)
	c.fill(k, []byte("old"), version)
	if v, _, ok := c.get(k); !ok || v != nil {
		t.Fatalf("after a Delete raced a read, cached %q (hit %v), want a tombstone", v, ok)
	}
	c.written()
	if v, _, ok := c.get(k); ok {
		t.Fatalf("a written-back tombstone is still cached (%q)", v)
	}

	_, version, _ = c.get(k)
	c.fill(k, []byte("read"), version)
	if v, _, _ := c.get(k); string(v) != "read" {
		t.Fatalf("a read with no write since cached %q, want \"read\"", v)
	}
}
