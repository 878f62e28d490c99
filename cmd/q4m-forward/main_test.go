package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

const (
	testSrc = "dbi:mysql:database=db1;table=tbl1;host=127.0.0.1;port=3306;user=foo;password=XXX"
	testDst = "dbi:mysql:database=db2;table=tbl2;host=10.1.2.3;port=3307;user=bar"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, m *Main)
	}{
		{"defaults", []string{testSrc, testDst}, func(t *testing.T, m *Main) {
			if m.Reset || m.Sender != 0 || m.WaitTimeout != 60 || m.LogEvery != 1000 || m.ExitWhenEmpty ||
				m.LogLevel != "info" || m.LogFormat != "text" || m.ShutdownTimeout != 10*time.Second {
				t.Errorf("defaults: %+v", m)
			}
			if m.Src.Table != "tbl1" || m.Src.Database != "db1" || m.Src.User != "foo" || m.Src.Password != "XXX" {
				t.Errorf("SRC: %+v", m.Src)
			}
			if m.Dst.Table != "tbl2" || m.Dst.Addr() != "10.1.2.3:3307" || m.Dst.User != "bar" {
				t.Errorf("DST: %+v", m.Dst)
			}
		}},
		{"script options", []string{"--reset", "--sender=5", testSrc, testDst}, func(t *testing.T, m *Main) {
			if !m.Reset || m.Sender != 5 {
				t.Errorf("reset %v sender %d", m.Reset, m.Sender)
			}
		}},
		{"separate value, one dash", []string{"-sender", "63", testSrc, testDst}, func(t *testing.T, m *Main) {
			if m.Sender != 63 {
				t.Errorf("sender %d", m.Sender)
			}
		}},
		{"options after operands (Getopt::Long)", []string{testSrc, "--reset", testDst, "--sender=2", "--exit-when-empty"}, func(t *testing.T, m *Main) {
			if !m.Reset || m.Sender != 2 || !m.ExitWhenEmpty || m.Src.Table != "tbl1" || m.Dst.Table != "tbl2" {
				t.Errorf("%+v", m)
			}
		}},
		{"double dash ends options", []string{"--sender=1", "--", testSrc, testDst}, func(t *testing.T, m *Main) {
			if m.Sender != 1 || m.Dst.Table != "tbl2" {
				t.Errorf("%+v", m)
			}
		}},
		{"daemon options", []string{"--log-level=debug", "--log-format", "json", "--wait-timeout=0", "--log-every=10",
			"--shutdown-timeout=3s", testSrc, testDst}, func(t *testing.T, m *Main) {
			if m.LogLevel != "debug" || m.LogFormat != "json" || m.WaitTimeout != 0 || m.LogEvery != 10 || m.ShutdownTimeout != 3*time.Second {
				t.Errorf("%+v", m)
			}
			if m.log == nil || !m.log.Enabled(t.Context(), -4) {
				t.Errorf("debug logging not enabled")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMain()
			var out, errOut bytes.Buffer
			if err := m.ParseFlags(tc.args, &out, &errOut); err != nil {
				t.Fatalf("ParseFlags(%q): %v", tc.args, err)
			}
			if out.Len() > 0 || errOut.Len() > 0 {
				t.Errorf("output: %q %q", out.String(), errOut.String())
			}
			tc.check(t, m)
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "want 2 operands"},
		{[]string{testSrc}, "want 2 operands"},
		{[]string{testSrc, testDst, testDst}, "want 2 operands"},
		{[]string{"--", testSrc, "--reset", testDst}, "want 2 operands"},
		{[]string{"--sender=64", testSrc, testDst}, "--sender must be 0..63"},
		{[]string{"--sender=-1", testSrc, testDst}, "--sender must be 0..63"},
		{[]string{"--sender=x", testSrc, testDst}, "invalid value"},
		{[]string{"--wait-timeout=-1", testSrc, testDst}, "--wait-timeout must be"},
		{[]string{"--wait-timeout=2147484", testSrc, testDst}, "--wait-timeout must be"},
		{[]string{"--log-every=-1", testSrc, testDst}, "--log-every"},
		{[]string{"--log-format=xml", testSrc, testDst}, "--log-format"},
		{[]string{"--log-level=loud", testSrc, testDst}, "--log-level"},
		{[]string{"--nope", testSrc, testDst}, "flag provided but not defined"},
		{[]string{"dbi:mysql:database=db1", testDst}, "SRC: table name missing in operand"},
		{[]string{testSrc, "dbi:mysql:database=db2;user=x;password=hidden"}, "DST: table name missing in operand"},
	}
	for _, tc := range tests {
		m := NewMain()
		var out, errOut bytes.Buffer
		err := m.ParseFlags(tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFlags(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hidden") {
			t.Errorf("error %q shows a password", err)
		}
		if out.Len() > 0 {
			t.Errorf("ParseFlags(%q) wrote to stdout: %q", tc.args, out.String())
		}
	}
}

func TestParseFlagsHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"--help", testSrc, testDst}, {testSrc, "--help"}} {
		m := NewMain()
		var out, errOut bytes.Buffer
		err := m.ParseFlags(args, &out, &errOut)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("ParseFlags(%q) = %v, want flag.ErrHelp", args, err)
		}
		for _, want := range []string{"Usage: q4m-forward [options] SRC DST", "table=", "--reset", "--sender", "--wait-timeout", "--exit-when-empty", "--log-every"} {
			if !strings.Contains(out.String(), strings.TrimPrefix(want, "-")) {
				t.Errorf("ParseFlags(%q): usage lacks %q:\n%s", args, want, out.String())
			}
		}
	}
	var out bytes.Buffer
	if err := NewMain().ParseFlags([]string{"--version"}, &out, &out); !errors.Is(err, errVersion) || !strings.HasPrefix(out.String(), "q4m-forward ") {
		t.Errorf("--version: %v %q", err, out.String())
	}
}
