// Package crashtest holds what the crash tests share: integration's
// TestCrashUnderLoad (the server killed with SIGKILL) and internal/powerloss
// (the power cut under an in-process server). Both run clients that check
// every answer, and tell an answer no crash can explain (a Violation,
// reported even after the crash) from a connection lost to it.
package crashtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Violation is an answer no crash can explain (not a connection error):
// reported even when it comes after the crash.
type Violation struct{ Msg string }

func (v *Violation) Error() string { return v.Msg }

// Violationf returns a *Violation with the formatted message.
func Violationf(format string, args ...any) error {
	return &Violation{fmt.Sprintf(format, args...)}
}

// Unexpected collects the errors of a cycle's clients that the crash does
// not explain: a Violation whenever it comes, any other error while
// crashed reports false. It is safe for concurrent use.
type Unexpected struct {
	crashed func() bool
	mu      sync.Mutex
	errs    []string
}

// NewUnexpected returns an empty Unexpected; crashed reports whether the
// crash has come.
func NewUnexpected(crashed func() bool) *Unexpected {
	return &Unexpected{crashed: crashed}
}

// Report records err of the client who unless err is nil or explained by
// the crash.
func (u *Unexpected) Report(who string, err error) {
	if err == nil {
		return
	}
	var v *Violation
	if errors.As(err, &v) || !u.crashed() {
		u.mu.Lock()
		u.errs = append(u.errs, fmt.Sprintf("%s: %v", who, err))
		u.mu.Unlock()
	}
}

// Errors returns what was recorded, "who: error" each.
func (u *Unexpected) Errors() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.errs)
}

// EnvUint returns the environment variable name as a uint64, def when it
// is unset, and ends t when it is not a number.
func EnvUint(t testing.TB, name string, def uint64) uint64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// Quote lists table names as SQL strings: 't1','t2'.
func Quote(tables []string) string {
	return "'" + strings.Join(tables, "','") + "'"
}

// One runs a query that must return exactly one row of one column; any
// other number of rows is a Violation.
func One(ctx context.Context, c *sql.Conn, q string, args ...any) (sql.NullInt64, error) {
	var v sql.NullInt64
	rs, err := c.QueryContext(ctx, q, args...)
	if err != nil {
		return v, err
	}
	defer rs.Close()
	n := 0
	for rs.Next() {
		if err := rs.Scan(&v); err != nil {
			return v, err
		}
		n++
	}
	if err := rs.Err(); err != nil {
		return v, err
	}
	if err := rs.Close(); err != nil {
		return v, err
	}
	if n != 1 {
		return v, Violationf("%s: %d rows, want 1", q, n)
	}
	return v, nil
}
