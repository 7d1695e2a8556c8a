// Package testenv reads the environment variables that size Riffle's
// heavier tests and benchmarks (rounds, records, partitions).
package testenv

import (
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
