package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// dirtyMetric is the broker's gauge of the share of a compacted
// partition's log not yet cleaned.
const dirtyMetric = "riffle_log_dirty_ratio"

// dirtyRatios reads dirtyMetric by topic and partition from the
// Prometheus text exposition the broker serves at http://addr/metrics.
func dirtyRatios(ctx context.Context, addr string) (map[string]map[int32]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := "http://" + addr + "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("--http: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	out := make(map[string]map[int32]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), dirtyMetric+"{")
		if !ok {
			continue
		}
		labels, value, err := parseSample(rest)
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %s: %w", url, sc.Text(), err)
		}
		p, err := strconv.ParseInt(labels["partition"], 10, 32)
		if err != nil || labels["topic"] == "" {
			return nil, fmt.Errorf("scrape %s: %s: want topic and partition labels", url, sc.Text())
		}
		t := labels["topic"]
		if out[t] == nil {
			out[t] = make(map[int32]float64)
		}
		out[t][int32(p)] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return out, nil
}

// parseSample parses the rest of an exposition line after "name{": the
// labels, "}", and the value (an optional timestamp after it is ignored).
func parseSample(s string) (map[string]string, float64, error) {
	labels := make(map[string]string)
	for {
		s = strings.TrimLeft(s, " ,")
		if rest, ok := strings.CutPrefix(s, "}"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				return nil, 0, errors.New("no value")
			}
			v, err := strconv.ParseFloat(fields[0], 64)
			return labels, v, err
		}
		name, rest, ok := strings.Cut(s, "=\"")
		if !ok || name == "" {
			return nil, 0, errors.New("malformed labels")
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				if rest[i] == 'n' {
					v.WriteByte('\n')
					continue
				}
			}
			v.WriteByte(rest[i])
		}
		if i == len(rest) {
			return nil, 0, errors.New("unterminated label value")
		}
		labels[strings.TrimSpace(name)] = v.String()
		s = rest[i+1:]
	}
}
