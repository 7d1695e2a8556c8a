package perf

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// LatencySummary describes a distribution of latencies.
type LatencySummary struct {
	Count int
	Mean  time.Duration
	P50   time.Duration
	P99   time.Duration
	P999  time.Duration
	Max   time.Duration
}

// String formats s as "p50 1.2ms p99 3.4ms p99.9 5.6ms max 7.8ms".
func (s LatencySummary) String() string {
	return fmt.Sprintf("p50 %s p99 %s p99.9 %s max %s", round(s.P50), round(s.P99), round(s.P999), round(s.Max))
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// Latencies records latency samples. It keeps every sample, which at the
// rates a single client sustains costs 8 bytes a record, so percentiles are
// exact rather than bucketed. The zero value is ready to use; it is not
// safe for concurrent use.
type Latencies struct {
	samples []time.Duration
}

// Add records one sample.
func (l *Latencies) Add(d time.Duration) { l.samples = append(l.samples, d) }

// Len reports the number of samples recorded.
func (l *Latencies) Len() int { return len(l.samples) }

// Summary sorts the samples and summarises them. It returns the zero
// summary when there are none.
func (l *Latencies) Summary() LatencySummary {
	n := len(l.samples)
	if n == 0 {
		return LatencySummary{}
	}
	slices.Sort(l.samples)
	var sum float64
	for _, d := range l.samples {
		sum += float64(d)
	}
	return LatencySummary{
		Count: n,
		Mean:  time.Duration(sum / float64(n)),
		P50:   Percentile(l.samples, 0.50),
		P99:   Percentile(l.samples, 0.99),
		P999:  Percentile(l.samples, 0.999),
		Max:   l.samples[n-1],
	}
}

// Percentile returns the q-quantile (0 < q <= 1) of sorted by the
// nearest-rank method: the smallest sample at or below which at least a
// fraction q of the samples lie. It returns 0 for no samples.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
