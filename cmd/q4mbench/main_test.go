package main

import (
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--phase", "drain", "--consume", "skip-locked"}, true},
		{[]string{"--phase", "sideways"}, false},
		{[]string{"--consume", "magic"}, false},
		{[]string{"--payload", "8"}, false},
		{[]string{"--phase", "insert", "--producers", "0"}, false},
		{[]string{"--phase", "drain", "--consumers", "0"}, false},
		{[]string{"--driver", "postgres"}, true},
		{[]string{"--driver", "postgres", "--consume", "where-wait"}, false},
		{[]string{"--driver", "amqp", "--prefetch", "200", "--confirm-window", "200"}, true},
		{[]string{"--driver", "amqp", "--prefetch", "0"}, false},
		{[]string{"--driver", "kafka"}, false},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if (err == nil) != tc.ok {
			t.Errorf("%v: %v", tc.args, err)
		}
	}
}

func TestSummary(t *testing.T) {
	var r recorder
	for i := 1; i <= 100; i++ {
		r.add(time.Duration(i) * time.Millisecond)
	}
	s := r.summary()
	if s.Count != 100 || s.P50 != 51 || s.P99 != 100 || s.Max != 100 {
		t.Errorf("summary = %+v", s)
	}
}

func TestBody(t *testing.T) {
	for _, verify := range []bool{false, true} {
		b := encodeBody(1<<40+7, -3, 100, verify)
		id, ts, err := decodeBody(b)
		if len(b) != 100 || id != 1<<40+7 || ts != -3 || err != nil {
			t.Errorf("decodeBody(encodeBody) = %d, %d, %v (%d bytes)", id, ts, err, len(b))
		}
		if _, _, err := decodeBody(b[:15]); err == nil {
			t.Error("a 15-byte message decoded")
		}
	}
}

// Under --verify every message's filler is its own: another message's, a
// cut one or one altered in one byte does not pass.
func TestFiller(t *testing.T) {
	c := &Config{Payload: 100, Verify: true}
	if got := filler(5, 84, false); string(got) != strings.Repeat("x", 84) {
		t.Errorf("filler without --verify = %q", got)
	}
	if err := checkFiller(&Config{Payload: 100}, 5, []byte("anything")); err != nil {
		t.Errorf("without --verify a payload was checked: %v", err)
	}
	seen := map[string]int64{}
	for id := range int64(2000) {
		f := filler(id, 84, true)
		if len(f) != 84 {
			t.Fatalf("filler(%d) has %d bytes", id, len(f))
		}
		if other, ok := seen[string(f)]; ok {
			t.Fatalf("messages %d and %d have the same filler", other, id)
		}
		seen[string(f)] = id
		if err := checkFiller(c, id, f); err != nil {
			t.Fatal(err)
		}
	}
	f := filler(1234, 84, true)
	altered := slices.Clone(f)
	altered[50]++
	for _, bad := range [][]byte{filler(1235, 84, true), f[:83], altered, nil} {
		if checkFiller(c, 1234, bad) == nil {
			t.Errorf("message 1234 with payload %q passed", bad)
		}
	}
	// The filler of a 16-byte message is empty; of a short one, the id cut.
	if got := filler(123456, 3, true); string(got) != "123" {
		t.Errorf("filler(123456, 3) = %q", got)
	}
}

// treeCPU counts the time of a child that exited and was reaped: the way
// PostgreSQL's backends are counted.
func TestTreeCPUCountsReapedChildren(t *testing.T) {
	before, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	after, err := treeCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// /proc counts in ticks of 10 ms: allow two of rounding.
	if got := after - before; got < child-2*clockTick {
		t.Errorf("tree CPU grew by %v, the child alone used %v", got, child)
	}
	if _, err := treeCPU(1 << 30); err == nil {
		t.Error("treeCPU of a pid that does not exist: no error")
	}
}
