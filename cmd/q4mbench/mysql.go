package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mysqlDriver speaks the MySQL text protocol (as DBD::mysql does) to
// q4mproxy, a Q4M server, or a MySQL/MariaDB consumed with SKIP LOCKED.
type mysqlDriver struct {
	c       *Config
	db      *sql.DB
	others  []*sql.DB    // --also-dsn
	next    atomic.Int64 // spreads connections over db and others
	payload string
}

func newMySQL(c *Config) (driver, error) {
	d := &mysqlDriver{c: c, payload: strings.Repeat("x", c.Payload-16)}
	for i, s := range append([]string{c.DSN}, splitDSNs(c.AlsoDSN)...) {
		dsn, err := mysql.ParseDSN(s)
		if err != nil {
			return nil, err
		}
		dsn.InterpolateParams = true // text protocol, as DBD::mysql
		db, err := sql.Open("mysql", dsn.FormatDSN())
		if err != nil {
			return nil, err
		}
		n := c.Producers + c.Consumers + 8
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		if i == 0 {
			d.db = db
		} else {
			d.others = append(d.others, db)
		}
	}
	return d, nil
}

func splitDSNs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// pool returns the server the next connection goes to.
func (d *mysqlDriver) pool() *sql.DB {
	i := int(d.next.Add(1)-1) % (1 + len(d.others))
	if i == 0 {
		return d.db
	}
	return d.others[i-1]
}

func (d *mysqlDriver) close() {
	d.db.Close()
	for _, db := range d.others {
		db.Close()
	}
}

// setup creates the table: a queue table, or an InnoDB table for
// skip-locked.
func (d *mysqlDriver) setup(ctx context.Context) error {
	c := d.c
	if _, err := d.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+c.Table); err != nil {
		return err
	}
	ddl := fmt.Sprintf("CREATE TABLE %s (id BIGINT NOT NULL, ts BIGINT NOT NULL, payload VARCHAR(%d) NOT NULL) ENGINE=queue", c.Table, c.Payload)
	if c.Consume == "skip-locked" {
		ddl = fmt.Sprintf("CREATE TABLE %s (seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, id BIGINT NOT NULL, ts BIGINT NOT NULL, payload VARCHAR(%d) NOT NULL) ENGINE=InnoDB", c.Table, c.Payload)
	}
	if _, err := d.db.ExecContext(ctx, ddl); err != nil {
		return err
	}
	// The other servers learn of the table from the store they share.
	for _, db := range d.others {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var n int64
			err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+c.Table).Scan(&n)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the table on another server: %w", err)
			}
			time.Sleep(10 * time.Millisecond) // polling until the other server sees the table
		}
	}
	return nil
}

// stmtCtx is the context of the workload's statements. It is never
// cancelled: for a cancellable context go-sql-driver hands every statement
// to a watcher goroutine, which would cost the client (sharing the CPUs with
// the server) a goroutine switch per statement. Consumers wait at most 1 s
// per statement, and the loops check the run's context between statements.
var stmtCtx = context.Background()

type mysqlProducer struct {
	d    *mysqlDriver
	conn *sql.Conn
	q    strings.Builder
}

func (d *mysqlDriver) producer(ctx context.Context) (producer, error) {
	conn, err := d.pool().Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &mysqlProducer{d: d, conn: conn}, nil
}

func (p *mysqlProducer) send(_ context.Context, first int64, n int, ts int64, acked func(int64, time.Duration)) error {
	q := &p.q
	q.Reset()
	fmt.Fprintf(q, "INSERT INTO %s (id, ts, payload) VALUES ", p.d.c.Table)
	for i := range int64(n) {
		if i > 0 {
			q.WriteString(",")
		}
		payload := p.d.payload
		if p.d.c.Verify { // digits, a colon and letters: nothing to escape
			payload = string(filler(first+i, p.d.c.Payload-16, true))
		}
		fmt.Fprintf(q, "(%d, %d, '%s')", first+i, ts, payload)
	}
	t0 := time.Now()
	if _, err := p.conn.ExecContext(stmtCtx, q.String()); err != nil {
		return err
	}
	acked(first, time.Since(t0))
	return nil
}

func (p *mysqlProducer) flush(context.Context, func(int64, time.Duration)) error { return nil }
func (p *mysqlProducer) close()                                                  { p.conn.Close() }

type mysqlConsumer struct {
	d    *mysqlDriver
	conn *sql.Conn
	// the statements, formatted once
	wait, selectRow, whereWait, skipLocked string
}

func (d *mysqlDriver) consumer(ctx context.Context) (consumer, error) {
	conn, err := d.pool().Conn(ctx)
	if err != nil {
		return nil, err
	}
	t, v := d.c.Table, verifyColumn(d.c)
	return &mysqlConsumer{d: d, conn: conn,
		wait:       fmt.Sprintf("SELECT queue_wait('%s', 1)", t),
		selectRow:  fmt.Sprintf("SELECT id, ts%s FROM %s", v, t),
		whereWait:  fmt.Sprintf("SELECT id, ts%s FROM %s WHERE queue_wait('%s', 1)", v, t, t),
		skipLocked: fmt.Sprintf("SELECT seq, id, ts%s FROM %s ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED", v, t),
	}, nil
}

func (m *mysqlConsumer) close() {
	if m.d.c.Consume != "skip-locked" {
		_, _ = m.conn.ExecContext(stmtCtx, "SELECT queue_end()")
	}
	m.conn.Close()
}

func (m *mysqlConsumer) take(ctx context.Context) (id, ts int64, ok bool, err error) {
	conn := m.conn
	dest := []any{&id, &ts}
	var payload []byte
	if m.d.c.Verify {
		dest = append(dest, &payload)
	}
	switch m.d.c.Consume {
	case "wait-select":
		var idx sql.NullInt64
		if err := conn.QueryRowContext(stmtCtx, m.wait).Scan(&idx); err != nil {
			return 0, 0, false, err
		}
		if idx.Int64 != 1 {
			return 0, 0, false, nil
		}
		err := conn.QueryRowContext(stmtCtx, m.selectRow).Scan(dest...)
		if err == nil {
			err = checkFiller(m.d.c, id, payload)
		}
		return id, ts, err == nil, err
	case "where-wait":
		err := conn.QueryRowContext(stmtCtx, m.whereWait).Scan(dest...)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, false, nil
		}
		if err == nil {
			err = checkFiller(m.d.c, id, payload)
		}
		return id, ts, err == nil, err
	}
	// skip-locked: one transaction per message, as an InnoDB queue does.
	tx, err := conn.BeginTx(stmtCtx, nil)
	if err != nil {
		return 0, 0, false, err
	}
	var seq int64
	err = tx.QueryRowContext(stmtCtx, m.skipLocked).Scan(append([]any{&seq}, dest...)...)
	if errors.Is(err, sql.ErrNoRows) {
		_ = tx.Rollback()
		idle(ctx, time.Millisecond) // nothing to take: InnoDB has no blocking wait
		return 0, 0, false, nil
	}
	if err == nil {
		err = checkFiller(m.d.c, id, payload)
	}
	if err != nil {
		_ = tx.Rollback()
		return 0, 0, false, err
	}
	if _, err := tx.ExecContext(stmtCtx, fmt.Sprintf("DELETE FROM %s WHERE seq = %d", m.d.c.Table, seq)); err != nil {
		_ = tx.Rollback()
		return 0, 0, false, err
	}
	return id, ts, true, tx.Commit()
}
