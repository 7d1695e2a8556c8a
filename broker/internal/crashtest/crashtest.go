// Package crashtest holds what the broker's power-cut tests share: how
// many cut points a test runs and the seed that places them, both set
// from the environment so a long run or a failure's replay needs no code
// change.
package crashtest

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Rounds returns how many simulated power cuts a test runs:
// RIFFLE_CRASH_ROUNDS if set, else def.
func Rounds(t testing.TB, def int) int {
	t.Helper()
	if v := os.Getenv("RIFFLE_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("RIFFLE_CRASH_ROUNDS=%q", v)
		}
		return n
	}
	return def
}

// Seed returns the seed of a test's cut points: RIFFLE_CRASH_SEED, to
// replay a failure, or else the clock. Tests log it so a failure can be
// replayed.
func Seed(t testing.TB) uint64 {
	t.Helper()
	if v := os.Getenv("RIFFLE_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("RIFFLE_CRASH_SEED=%q", v)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}
