package main

import "testing"

func TestProbe(t *testing.T) {
	for _, overwrite := range []bool{false, true} {
		p50, p99, err := probe(t.TempDir(), 20, 200, overwrite)
		if err != nil {
			t.Fatal(err)
		}
		if p50 <= 0 || p99 < p50 {
			t.Errorf("overwrite=%v: p50 %v ms, p99 %v ms", overwrite, p50, p99)
		}
	}
	if _, _, err := probe("/nonexistent-dir", 1, 1, false); err == nil {
		t.Error("probing a missing directory succeeded")
	}
}
