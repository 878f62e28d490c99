package queue

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// pebbleLogger adapts a *slog.Logger to pebble's Logger interface so storage
// messages share the process's log handler.
type pebbleLogger struct {
	l   *slog.Logger
	lim *logLimiter
}

// Infof logs Pebble's information at Debug level, except what recovery
// did with the write-ahead log at startup, which an operator should see
// (a torn tail after a crash is dropped there).
func (p pebbleLogger) Infof(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	if strings.Contains(msg, "WAL") && (strings.Contains(msg, "replay") || strings.Contains(msg, "stopped reading")) {
		p.l.Info("store recovery: " + msg)
		return
	}
	p.l.Debug(msg)
}

// Errorf logs Pebble's errors, each kind (format) at most once per
// logEvery: a background job that fails retries at once, forever.
func (p pebbleLogger) Errorf(format string, args ...any) {
	ok, n := p.lim.allow("pebble: " + format)
	if !ok {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	if n > 0 {
		p.l.Error(msg, "suppressed", n)
		return
	}
	p.l.Error(msg)
}

// Fatalf is how Pebble reports a failure it cannot continue from (a failed
// WAL write or sync, say). It panics with a fatalError: the commit loop
// recovers it, fails the batch's callers with ErrStorage and refuses later
// writes; anywhere else the panic stops the process.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	p.l.Log(context.Background(), slog.LevelError+4, "storage failure: "+msg)
	panic(fatalError{msg})
}

type fatalError struct{ msg string }

func (e fatalError) Error() string { return "pebble: " + e.msg }

// logEvery is how often a repeated message is logged.
const logEvery = 10 * time.Second

// logLimiter lets a repeated message (by key) through at most once per
// every, and counts the ones it held back since.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]*limited // keys are a fixed set of messages
}

type limited struct {
	at         time.Time
	suppressed int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, last: make(map[string]*limited)}
}

// allow reports whether the message may be logged now, and how many were
// held back since it was last logged.
func (l *logLimiter) allow(key string) (bool, int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.last[key]
	if e == nil {
		l.last[key] = &limited{at: now}
		return true, 0
	}
	if now.Sub(e.at) < l.every {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.at, e.suppressed = now, 0
	return true, n
}
