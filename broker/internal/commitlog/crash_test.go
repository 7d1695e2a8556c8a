package commitlog

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const crashDirEnv = "COMMITLOG_CRASH_DIR"

// TestCrashChild is the process TestKill9 kills: it appends idempotent
// batches and prints each offset once WaitDurable has acknowledged it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process of TestKill9")
	}
	cfg := testConfig()
	cfg.Sync = SyncGroupCommit
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := int32(0); i < 100_000 && time.Now().Before(deadline); i++ {
		res, err := l.Append(makeBatch(t, idem(9, 0, 2*i, 2)), time.Now())
		if err == nil {
			err = l.WaitDurable(context.Background(), res.LastOffset+1)
		}
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("acked %d\n", res.LastOffset+1)
	}
}

// TestKill9 kills a process that is appending and checks that everything
// it acknowledged is there, whole, with its producer state.
func TestKill9(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("running as the helper process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked int64
	sc := bufio.NewScanner(out)
	for acks := 0; acks < 300 && sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			if acked, err = strconv.ParseInt(v, 10, 64); err != nil {
				t.Fatal(err)
			}
			acks++
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if acked == 0 {
		t.Fatal("the child acknowledged nothing")
	}

	l := openLog(t, dir, testConfig())
	end := l.EndOffset()
	if end < acked || end%2 != 0 {
		t.Fatalf("recovered end %d, acknowledged %d", end, acked)
	}
	if hs := readAll(t, l, 0); int64(len(hs)) != end/2 {
		t.Fatalf("%d batches for end %d", len(hs), end)
	}
	last := int32(end/2 - 1)
	if res := mustAppend(t, l, makeBatch(t, idem(9, 0, 2*last, 2))); !res.Duplicate || res.BaseOffset != end-2 {
		t.Fatalf("retry of the last batch after the crash: %+v", res)
	}
	if res := mustAppend(t, l, makeBatch(t, idem(9, 0, 2*last+2, 2))); res.Duplicate || res.BaseOffset != end {
		t.Fatalf("next batch after the crash: %+v", res)
	}
}
