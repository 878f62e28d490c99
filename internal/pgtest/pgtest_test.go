package pgtest

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The tests' PostgreSQL runs with the settings of bench/compare's: each of
// Settings is one of the script's postgres -c options, and the script
// has no other.
func TestSettingsMatchBenchCompare(t *testing.T) {
	b, err := os.ReadFile("../../bench/compare")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		if strings.Contains(l, `"$PGBIN/postgres" -D`) {
			line = l
		}
	}
	if line == "" {
		t.Fatal("bench/compare: no line starts postgres")
	}
	var script []string
	f := strings.Fields(line)
	for i := range f[:len(f)-1] {
		if f[i] == "-c" {
			script = append(script, strings.Trim(f[i+1], `"`))
		}
	}
	var theirs []string
	for _, kv := range script {
		if !strings.HasPrefix(kv, "listen_addresses=") && !strings.HasPrefix(kv, "port=") && !strings.HasPrefix(kv, "unix_socket_directories=") {
			theirs = append(theirs, kv)
		}
	}
	if strings.Join(theirs, " ") != strings.Join(Settings, " ") {
		t.Errorf("bench/compare runs postgres with\n\t%s\nthe tests with\n\t%s", strings.Join(theirs, " "), strings.Join(Settings, " "))
	}
}

// The server answers with Settings in force, and Kill takes the
// postmaster and its backends away.
func TestServer(t *testing.T) {
	s := Start(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, kv := range Settings {
		name, want, _ := strings.Cut(kv, "=")
		var got string
		if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("SHOW %s = %s, want %s", name, got, want)
		}
	}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	kids := children(s.Pid())
	if len(kids) == 0 {
		t.Fatal("the postmaster has no children")
	}
	s.Kill()
	for _, pid := range append(kids, backend) {
		if alive(pid) {
			t.Errorf("process %d of the server lives on after Kill", pid)
		}
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("a connection to the killed server still answers")
	}
}
