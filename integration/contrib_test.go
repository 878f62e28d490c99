package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSystemdUnit checks contrib/q4mproxy.service with systemd-analyze
// verify (with ExecStart pointing at the binary under test, since verify
// wants it executable): no error and no warning. A misspelt key in a copy
// must draw a warning, so the check can fail.
func TestSystemdUnit(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		msg := "systemd-analyze is not available (install: apt-get install systemd; or run ./test.sh)"
		if os.Getenv("Q4MPROXY_REQUIRE_CLIENTS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	b, err := os.ReadFile("../contrib/q4mproxy.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"\nUser=q4mproxy\n", "\nExecReload=/bin/kill -HUP $MAINPID\n", "\nKillSignal=SIGTERM\n",
		"\nNoNewPrivileges=yes\n", "\nProtectSystem=strict\n", "\nReadWritePaths=/var/lib/q4mproxy\n", "\nLimitNOFILE=",
		"\nExecStart=/usr/local/bin/q4mproxy --config /etc/q4mproxy/q4mproxy.toml\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	// The stop timeout outlasts the graceful shutdown of the example config.
	stop := durationSetting(t, unit, `(?m)^TimeoutStopSec=(\S+)$`)
	example, err := os.ReadFile("../contrib/q4mproxy.toml")
	if err != nil {
		t.Fatal(err)
	}
	shutdown := durationSetting(t, string(example), `(?m)^shutdown_timeout = "(\S+)"$`)
	if stop <= shutdown+5*time.Second {
		t.Errorf("TimeoutStopSec %v leaves too little beyond shutdown_timeout %v", stop, shutdown)
	}
	// The data directory of the example config is the writable path.
	if !strings.Contains(string(example), "\ndata_dir = \"/var/lib/q4mproxy\"\n") {
		t.Errorf("the example config's data_dir is not the unit's ReadWritePaths")
	}

	verify := func(name, text string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), name)
		text = strings.ReplaceAll(text, "/usr/local/bin/q4mproxy", binPath)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	if out := verify("q4mproxy.service", unit); out != "" {
		t.Errorf("systemd-analyze verify contrib/q4mproxy.service:\n%s", out)
	}
	if out := verify("q4mproxy.service", strings.Replace(unit, "ProtectSystem=", "ProtectSystm=", 1)); !strings.Contains(out, "ProtectSystm") {
		t.Errorf("systemd-analyze verify did not flag a misspelt key: %q", out)
	}
}

func durationSetting(t *testing.T, text, re string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no match for %s", re)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPrintConfigCommand runs q4mproxy --print-config on the example
// config: exit status 0, the settings on stdout with the environment over
// the file and flags over both, no secret, and its output, given back as
// --config, prints the same.
func TestPrintConfigCommand(t *testing.T) {
	run := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(binPath, append(args, "--print-config")...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("q4mproxy %s --print-config: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "Q4MPROXY_") {
			env = append(env, e)
		}
	}
	out := run(env, "--config", "../contrib/q4mproxy.toml")
	for _, want := range []string{"\ndata_dir = \"/var/lib/q4mproxy\"\n", "\nmax_connections = 151\n", "\nlisten = \"127.0.0.1:3306\"\n", "\npassword = \"\"\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config of the example lacks %q:\n%s", strings.TrimSpace(want), out)
		}
	}
	printed := filepath.Join(t.TempDir(), "printed.toml")
	if err := os.WriteFile(printed, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if again := run(env, "--config", printed); again != out {
		t.Errorf("--print-config of the printed example differs:\n%s\n----\n%s", out, again)
	}

	out = run(append(env, "Q4MPROXY_MAX_CONNECTIONS=77", "Q4MPROXY_LOG_LEVEL=warn", "Q4MPROXY_PASSWORD=hush-hush"),
		"--config", "../contrib/q4mproxy.toml", "--log-level", "error")
	for _, want := range []string{"\nmax_connections = 77\n", "\nlog_level = \"error\"\n", "\npassword = \"<redacted>\"\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config with the environment lacks %q:\n%s", strings.TrimSpace(want), out)
		}
	}
	if strings.Contains(out, "hush-hush") {
		t.Errorf("--print-config shows the password:\n%s", out)
	}
}
