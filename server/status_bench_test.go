package server

import (
	"strings"
	"testing"
)

// BenchmarkClassify is the Com_ classification every COM_QUERY pays: a
// producer's INSERT and a consumer's one-statement consume, as q4mbench
// sends them.
func BenchmarkClassify(b *testing.B) {
	insert := "INSERT INTO q4mbench (id, ts, payload) VALUES (12345, 1764000000000000, '" + strings.Repeat("x", 84) + "')"
	consume := "SELECT id, ts FROM q4mbench WHERE queue_wait('q4mbench', 1)"
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		if classify(insert) == noCom || classify(consume) == noCom {
			b.Fatal("not classified")
		}
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}

// lowerWord and containsFold agree with the strings functions they stand
// in for.
func TestLowerWordContainsFold(t *testing.T) {
	for _, w := range []string{"INSERT", "Select", "show", "q4mbench", "Q4MBENCH", "ÉTÉ", "SeLeCtIvItYiSlOnGeRtHaNsIxTeEn", ""} {
		if got := lowerWord(w); got != strings.ToLower(w) {
			t.Errorf("lowerWord(%q) = %q", w, got)
		}
	}
	for _, tc := range []struct{ s, sub string }{
		{"INSERT INTO t SELECT 1", "select"}, {"insert into t values (1)", "select"}, {"x VALUES", "values"},
		{"SELEC", "select"}, {"", "select"}, {"sElEcT", "select"},
	} {
		if got, want := containsFold(tc.s, tc.sub), strings.Contains(strings.ToLower(tc.s), tc.sub); got != want {
			t.Errorf("containsFold(%q, %q) = %v", tc.s, tc.sub, got)
		}
	}
}
