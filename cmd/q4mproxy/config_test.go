package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clearEnv unsets every Q4MPROXY_* variable named after a flag for the
// test, so the environment the tests run in does not leak into them.
func clearEnv(t *testing.T) {
	t.Helper()
	NewMain().flagsOnly().VisitAll(func(f *flag.Flag) {
		if _, ok := os.LookupEnv(envName(f.Name)); ok {
			t.Setenv(envName(f.Name), "") // restored after the test
		}
	})
	t.Setenv(envName("config"), "")
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigPrecedence checks flags > environment > file > defaults, for
// a setting of each type.
func TestConfigPrecedence(t *testing.T) {
	file := "max_connections = 20\nshutdown-timeout = \"3s\"\nlog_level = \"warn\"\nrequire_secure_transport = false\n"
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		wantMax int
		wantST  time.Duration
		wantLvl string
	}{
		{name: "defaults", wantMax: 151, wantST: 10 * time.Second, wantLvl: "info"},
		{name: "file", args: []string{"--config", "FILE"}, wantMax: 20, wantST: 3 * time.Second, wantLvl: "warn"},
		{name: "file from the environment", env: map[string]string{"Q4MPROXY_CONFIG": "FILE"}, wantMax: 20, wantST: 3 * time.Second, wantLvl: "warn"},
		{name: "environment over file", args: []string{"--config", "FILE"},
			env:     map[string]string{"Q4MPROXY_MAX_CONNECTIONS": "30", "Q4MPROXY_SHUTDOWN_TIMEOUT": "4s"},
			wantMax: 30, wantST: 4 * time.Second, wantLvl: "warn"},
		{name: "flags over environment and file", args: []string{"--config", "FILE", "--max-connections", "40", "--log-level=error"},
			env:     map[string]string{"Q4MPROXY_MAX_CONNECTIONS": "30", "Q4MPROXY_LOG_LEVEL": "debug"},
			wantMax: 40, wantST: 3 * time.Second, wantLvl: "error"},
		{name: "empty variable is unset", args: []string{"--config", "FILE"},
			env:     map[string]string{"Q4MPROXY_MAX_CONNECTIONS": ""},
			wantMax: 20, wantST: 3 * time.Second, wantLvl: "warn"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			path := writeFile(t, "q4mproxy.toml", file)
			for k, v := range tc.env {
				t.Setenv(k, strings.ReplaceAll(v, "FILE", path))
			}
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = strings.ReplaceAll(a, "FILE", path)
			}
			m := NewMain()
			if err := m.ParseFlags(args, io.Discard); err != nil {
				t.Fatalf("ParseFlags(%q): %v", args, err)
			}
			if m.MaxConnections != tc.wantMax || m.ShutdownTimeout != tc.wantST || m.LogLevel != tc.wantLvl {
				t.Errorf("max_connections %d, shutdown_timeout %v, log_level %s; want %d, %v, %s",
					m.MaxConnections, m.ShutdownTimeout, m.LogLevel, tc.wantMax, tc.wantST, tc.wantLvl)
			}
		})
	}
}

// TestConfigEveryFlag sets every setting from the file, then from the
// environment: nothing is left out when a flag is added.
func TestConfigEveryFlag(t *testing.T) {
	clearEnv(t)
	m := NewMain()
	if err := m.ParseFlags(nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	var file strings.Builder
	n := 0
	m.flags.VisitAll(func(f *flag.Flag) {
		if commandFlags[f.Name] {
			return
		}
		n++
		// Each value as --print-config writes it: typed where the flag is.
		file.WriteString(fileKey(f.Name) + " = " + tomlValue(f) + "\n")
	})
	if n < 20 {
		t.Fatalf("only %d settings", n)
	}
	path := writeFile(t, "all.toml", file.String())
	m2 := NewMain()
	if err := m2.ParseFlags([]string{"--config", path}, io.Discard); err != nil {
		t.Fatalf("every flag in the file:\n%s\n%v", file.String(), err)
	}
	if len(m2.configFile.settings) != n {
		t.Errorf("%d settings read, want %d", len(m2.configFile.settings), n)
	}
	m.flags.VisitAll(func(f *flag.Flag) {
		if commandFlags[f.Name] || secret(f.Name) {
			return
		}
		t.Setenv(envName(f.Name), f.Value.String())
	})
	m3 := NewMain()
	if err := m3.ParseFlags(nil, io.Discard); err != nil {
		t.Fatalf("every flag in the environment: %v", err)
	}
}

// TestConfigErrors checks that mistakes in the file name the key and line.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, toml, want string
	}{
		{"unknown key", "listen = \"127.0.0.1:0\"\n\nmax_conections = 3\n", `:3: unknown setting "max_conections"`},
		{"command flag", "print_config = true\n", `:1: unknown setting "print_config"`},
		{"config in config", "# x\nconfig = \"other.toml\"\n", `:2: unknown setting "config"`},
		{"unknown table", "[server]\nport = 1\n", `:1: unknown setting "server"`},
		{"unknown valve key", "[[valve]]\nname = \"a\"\n\n[[valve]]\nname = \"b\"\nmax_item = 2\n", `:6: unknown setting valve.max_item`},
		{"unknown destination key", "[[valve]]\n[[valve.destination]]\nname = \"x\"\nmaxitems = 1\n", `:4: unknown setting valve.destination.maxitems`},
		{"bad valve", "[[valve]]\nrelease = \"faithful\"\n", `faithful`},
		{"bad value", "max_connections = \"many\"\n", `:1: max_connections: invalid value "many"`},
		{"bad duration", "\n\nhandshake_timeout = 10\n", `:3: handshake_timeout: invalid value "10"`},
		{"array", "listen = [\"a\", \"b\"]\n", `:1: listen: want a string, a number or a boolean`},
		{"set twice", "data_dir = \"a\"\ndata-dir = \"b\"\n", `already set on line`},
		{"redacted password", "password = \"<redacted>\"\n", `:1: password is "<redacted>"`},
		{"syntax", "listen = \n", `toml:`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			path := writeFile(t, "bad.toml", tc.toml)
			err := NewMain().ParseFlags([]string{"--config", path}, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	t.Run("bad environment value", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("Q4MPROXY_MAX_CONNECTIONS", "many")
		err := NewMain().ParseFlags(nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), `Q4MPROXY_MAX_CONNECTIONS: invalid value "many"`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("redacted password overridden", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("Q4MPROXY_PASSWORD", "real")
		path := writeFile(t, "printed.toml", "password = \"<redacted>\"\n")
		m := NewMain()
		if err := m.ParseFlags([]string{"--config", path}, io.Discard); err != nil || m.Password != "real" {
			t.Fatalf("ParseFlags: %v, password %q", err, m.Password)
		}
	})
}

// TestPrintConfig checks that --print-config hides secrets, never reads
// the users file, and prints a file that gives the same settings back.
func TestPrintConfig(t *testing.T) {
	clearEnv(t)
	t.Setenv("Q4MPROXY_PASSWORD", "s3cret-pw")
	users := writeFile(t, "users", "alice:users-file-secret\n")
	path := writeFile(t, "in.toml", "max_connections = 7\nusers_file = \""+users+"\"\n\n[[valve]]\nname = \"v\"\nmax_items = 3\n[[valve.destination]]\nname = \"d\"\ninterval = 1.5\n")
	print := func(args ...string) string {
		t.Helper()
		m := NewMain()
		if err := m.ParseFlags(append(args, "--print-config"), io.Discard); err != errPrintConfig {
			t.Fatalf("ParseFlags(%q): %v, want errPrintConfig", args, err)
		}
		var b strings.Builder
		if err := m.writeConfig(&b, m.flags); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	out := print("--config", path, "--listen", "127.0.0.1:3399")
	for _, bad := range []string{"s3cret-pw", "users-file-secret", "alice"} {
		if strings.Contains(out, bad) {
			t.Errorf("--print-config shows %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{"password = \"<redacted>\"\n", "max_connections = 7\n", "listen = \"127.0.0.1:3399\"\n",
		"users_file = \"" + users + "\"\n", "[[valve]]", "max_items = 3", "interval = 1.5"} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out)
		}
	}
	again := writeFile(t, "printed.toml", out)
	if out2 := print("--config", again); out2 != out {
		t.Errorf("printing the printed file differs:\n%s\n----\n%s", out, out2)
	}
}

// TestExampleConfig checks contrib/q4mproxy.toml: it parses, shows every
// setting (commented out at its default or set), and --print-config of it
// round-trips.
func TestExampleConfig(t *testing.T) {
	clearEnv(t)
	const path = "../../contrib/q4mproxy.toml"
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	print := func(config string) string {
		t.Helper()
		m := NewMain()
		if err := m.ParseFlags([]string{"--config", config, "--print-config"}, io.Discard); err != errPrintConfig {
			t.Fatalf("ParseFlags(--config %s): %v", config, err)
		}
		var b strings.Builder
		if err := m.writeConfig(&b, m.flags); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	out := print(path)
	if out2 := print(writeFile(t, "printed.toml", out)); out2 != out {
		t.Errorf("printing the printed example differs:\n%s\n----\n%s", out, out2)
	}
	lines := strings.Split(string(text), "\n")
	NewMain().flagsOnly().VisitAll(func(f *flag.Flag) {
		if commandFlags[f.Name] {
			return
		}
		key := fileKey(f.Name) + " ="
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimPrefix(l, "# "), key) {
				return
			}
		}
		t.Errorf("%s does not show setting %s (--%s): add it, commented, with what it does", path, fileKey(f.Name), f.Name)
	})
}

// flagsOnly returns m's flag set, defined but not applied.
func (m *Main) flagsOnly() *flag.FlagSet {
	_ = m.ParseFlags([]string{"--version"}, io.Discard)
	return m.flags
}
