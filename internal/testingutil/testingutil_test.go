package testingutil

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("FreePorts(3) = %v: want three distinct ports", ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free after FreePorts returned: %v", p, err)
		}
		l.Close()
	}
}

func TestAwaitReady(t *testing.T) {
	n := 0
	err := AwaitReady(func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}, nil, time.Minute)
	if err != nil || n != 3 {
		t.Fatalf("AwaitReady = %v after %d pings; want nil after 3", err, n)
	}

	exited := make(chan struct{})
	close(exited)
	if err := AwaitReady(func() error { return errors.New("down") }, exited, time.Minute); !errors.Is(err, ErrExited) {
		t.Fatalf("AwaitReady of an exited server = %v, want ErrExited", err)
	}

	last := errors.New("refused")
	if err := AwaitReady(func() error { return last }, nil, 0); !errors.Is(err, ErrNoAnswer) || !errors.Is(err, last) {
		t.Fatalf("AwaitReady past its deadline = %v, want ErrNoAnswer wrapping the last error", err)
	}
}

type fakeServer struct{ stops int }

func (f *fakeServer) Stop() { f.stops++ }

func TestStart(t *testing.T) {
	t.Setenv("Q4MPROXY_REQUIRE_CLIENTS", "")
	f := &fakeServer{}
	t.Run("started", func(t *testing.T) {
		if s := Start(t, "fake", "fake-server", func() (*fakeServer, error) { return f, nil }); s != f || f.stops != 0 {
			t.Fatalf("Start = %p with %d stops, want %p not stopped yet", s, f.stops, f)
		}
	})
	if f.stops != 1 {
		t.Errorf("%d stops after the test ended, want 1", f.stops)
	}
	var skipped bool
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Start(t, "fake", "fake-server", func() (*fakeServer, error) { return nil, ErrMissing })
	})
	if !skipped {
		t.Error("a server not installed did not skip its test")
	}
}
