package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/broker"
)

// TestTwoInstancesServeEveryUser runs two instances on Riffle's broker and
// asks each of them for every user's click count, in all and in the last
// five minutes (the clicks are stamped now, and a few an hour ago, which
// count in all only).
func TestTwoInstancesServeEveryUser(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()), broker.Sync(broker.SyncNone), broker.Logger(logger))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 4, 1, nil, "clicks"); err != nil {
		t.Fatal(err)
	}
	want, recent := make(map[string]int64), make(map[string]int64)
	old := time.Now().Add(-time.Hour)
	for i := range 1000 {
		user := fmt.Sprintf("user-%d", i%37)
		want[user]++
		r := &kgo.Record{Topic: "clicks", Key: []byte(user), Value: []byte("click")}
		if i < 100 {
			r.Timestamp = old
		} else {
			recent[user]++
		}
		cl.Produce(context.Background(), r, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var addrs []string
	done := make(chan error, 2)
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		go func() {
			done <- Run(ctx, ln, Config{Brokers: []string{b.Addr()}, Topic: "clicks", StateDir: t.TempDir(), Logger: logger})
		}()
	}
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for user, n := range want {
		for _, addr := range addrs {
			for {
				got, err := clicks(addr, user)
				f, ferr := feature(addr, user)
				if err == nil && got == n && ferr == nil && f.Clicks == n && f.Clicks5m == recent[user] {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s from %s: %d, %v; features %+v, %v; want %d, %d in the last 5 minutes", user, addr, got, err, f, ferr, n, recent[user])
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

func clicks(addr, user string) (int64, error) {
	resp, err := http.Get("http://" + addr + "/stores/" + Store + "/keys/" + user)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Value int64  `json:"value"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", resp.Status, body.Error)
	}
	return body.Value, nil
}

type featuresBody struct {
	Clicks   int64 `json:"clicks"`
	Clicks5m int64 `json:"clicks_5m"`
}

func feature(addr, user string) (featuresBody, error) {
	var f featuresBody
	resp, err := http.Get("http://" + addr + "/features/" + user)
	if err != nil {
		return f, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return f, fmt.Errorf("%s", resp.Status)
	}
	return f, json.NewDecoder(resp.Body).Decode(&f)
}
