package queue

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// pebbleLogger adapts a *slog.Logger to pebble's Logger interface so storage
// messages share the process's log handler.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Log(context.Background(), slog.LevelError+4, strings.TrimSpace(fmt.Sprintf(format, args...)))
	os.Exit(1)
}
