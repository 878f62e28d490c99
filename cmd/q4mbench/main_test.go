package main

import (
	"io"
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
