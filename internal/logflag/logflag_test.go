package logflag

import (
	"bytes"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("dropped")
	log.Warn("kept", "k", 1)
	if out := buf.String(); strings.Contains(out, "dropped") || !strings.Contains(out, `"msg":"kept","k":1`) {
		t.Errorf("warn level, json: %q", out)
	}
	buf.Reset()
	log, err = New(&buf, "debug", "text")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("seen")
	if out := buf.String(); !strings.Contains(out, "level=DEBUG msg=seen") {
		t.Errorf("debug level, text: %q", out)
	}
	if _, err := New(&buf, "loud", "text"); err == nil || !strings.HasPrefix(err.Error(), "--log-level: ") {
		t.Errorf("level loud: %v", err)
	}
	if _, err := New(&buf, "info", "xml"); err == nil || err.Error() != `--log-format must be text or json, not "xml"` {
		t.Errorf("format xml: %v", err)
	}
}
