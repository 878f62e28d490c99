// Package testingutil holds what the helpers that start throwaway servers
// for tests (internal/mariadbtest, pgtest, rabbittest) share: free loopback
// ports, the rule for a server program that is not installed (the test
// skips, or fails under Q4MPROXY_REQUIRE_CLIENTS=1, as ./test.sh sets),
// and waiting for a started server to answer. Also what tests of several
// packages share: a self-signed certificate, a raw bad handshake, reading
// back a PNG a test had drawn.
package testingutil

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// ErrMissing marks a server program that is not installed.
var ErrMissing = errors.New("not installed")

// Missing ends t for a server that could not start because a program
// of it is not installed (err wraps ErrMissing): a skip, or a failure when
// Q4MPROXY_REQUIRE_CLIENTS=1. what names the server, install the Debian
// package that provides it.
func Missing(t testing.TB, what, install string, err error) {
	t.Helper()
	if os.Getenv("Q4MPROXY_REQUIRE_CLIENTS") == "1" {
		t.Fatalf("%s is required (Q4MPROXY_REQUIRE_CLIENTS=1): %v (apt-get install %s)", what, err, install)
	}
	t.Skipf("%s: %v (apt-get install %s)", what, err, install)
}

// Start starts a server for t with start and stops it when the test
// ends. A start that fails with ErrMissing ends t as Missing does (what
// and install are as for Missing); any other error fails t.
func Start[S interface{ Stop() }](t testing.TB, what, install string, start func() (S, error)) S {
	t.Helper()
	s, err := start()
	if errors.Is(err, ErrMissing) {
		Missing(t, what, install, err)
	}
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// FreePorts returns n distinct loopback ports that were free a moment ago
// (a server started on one may still lose it to another process: callers
// retry on another port).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// FreePort returns one loopback port that was free a moment ago.
func FreePort() (int, error) {
	p, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// ErrExited is returned by AwaitReady when the server exited before it
// answered.
var ErrExited = errors.New("exited before it answered")

// ErrNoAnswer is returned by AwaitReady when the server did not answer in
// time; it wraps the last error of ping.
var ErrNoAnswer = errors.New("did not answer in time")

// AwaitReady calls ping every 50 ms until it succeeds, the server exits
// (exited is closed) or within has passed.
func AwaitReady(ping func() error, exited <-chan struct{}, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := ping()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return ErrExited
		case <-time.After(50 * time.Millisecond): // polling until it answers
		}
		if time.Now().After(deadline) {
			return errors.Join(ErrNoAnswer, err)
		}
	}
}
