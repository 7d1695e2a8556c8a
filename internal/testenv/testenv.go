// Package testenv reads the environment variables that size Riffle's
// heavier tests and benchmarks (rounds, records, partitions), and hands
// tests loopback addresses for brokers they restart on the same address.
package testenv

import (
	"net"
	"os"
	"strconv"
	"testing"
)

// Int returns the positive integer in the environment variable name, or
// def if it is unset; anything else fails the test.
func Int(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
