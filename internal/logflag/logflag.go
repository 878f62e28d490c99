// Package logflag builds the logger that the commands' --log-level and
// --log-format flags ask for (cmd/q4mproxy, cmd/q4m-forward).
package logflag

import (
	"fmt"
	"io"
	"log/slog"
)

// New returns a logger that writes to w from level on ("debug", "info",
// "warn" or "error", as slog.Level reads them) in format "text" or "json".
// Its errors name the flag at fault.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
	}
}
