package crashtest

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
)

func TestEnvUint(t *testing.T) {
	t.Setenv("CRASHTEST_N", "")
	if n := EnvUint(t, "CRASHTEST_N", 7); n != 7 {
		t.Errorf("unset: %d, want the default 7", n)
	}
	t.Setenv("CRASHTEST_N", "42")
	if n := EnvUint(t, "CRASHTEST_N", 7); n != 42 {
		t.Errorf("CRASHTEST_N=42: %d", n)
	}
}

func TestQuote(t *testing.T) {
	if q := Quote([]string{"t1", "src"}); q != "'t1','src'" {
		t.Errorf("Quote = %s", q)
	}
}

func TestViolation(t *testing.T) {
	var v *Violation
	if err := Violationf("queue_wait returned %d", 5); !errors.As(err, &v) || v.Msg != "queue_wait returned 5" {
		t.Errorf("Violationf = %v, not a *Violation with the message", err)
	}
}

func TestUnexpected(t *testing.T) {
	var crashed atomic.Bool
	u := NewUnexpected(crashed.Load)
	u.Report("consumer 1", nil)
	u.Report("consumer 2", errors.New("connection reset"))
	crashed.Store(true)
	u.Report("consumer 3", errors.New("connection reset"))
	u.Report("producer 1", Violationf("queue_wait returned 9"))
	want := []string{"consumer 2: connection reset", "producer 1: queue_wait returned 9"}
	if got := u.Errors(); !slices.Equal(got, want) {
		t.Errorf("Errors() = %q, want %q (a violation always, another error only before the crash)", got, want)
	}
}
