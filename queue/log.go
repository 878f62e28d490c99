package queue

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// pebbleLogger adapts a *slog.Logger to pebble's Logger interface so storage
// messages share the process's log handler.
type pebbleLogger struct{ l *slog.Logger }

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

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(strings.TrimSpace(fmt.Sprintf(format, args...)))
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
