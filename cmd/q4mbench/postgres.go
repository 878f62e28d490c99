package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresDriver uses a PostgreSQL table as a queue, with the usual best
// single-message pattern of SKIP LOCKED job queues: produce is one INSERT,
// consume one autocommitted DELETE of the oldest unlocked row, RETURNING
// it. pgx prepares and caches both statements per connection.
type postgresDriver struct {
	c       *Config
	payload string
	take    string
}

func newPostgres(c *Config) (driver, error) {
	if _, err := pgx.ParseConfig(c.DSN); err != nil {
		return nil, err
	}
	return &postgresDriver{c: c, payload: strings.Repeat("x", c.Payload-16),
		take: fmt.Sprintf("DELETE FROM %[1]s WHERE seq = (SELECT seq FROM %[1]s ORDER BY seq FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, ts%[2]s", c.Table, verifyColumn(c)),
	}, nil
}

func (d *postgresDriver) close() {}

func (d *postgresDriver) connect(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, d.c.DSN)
}

func (d *postgresDriver) setup(ctx context.Context) error {
	conn, err := d.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + d.c.Table,
		fmt.Sprintf("CREATE TABLE %s (seq BIGSERIAL PRIMARY KEY, id BIGINT NOT NULL, ts BIGINT NOT NULL, payload VARCHAR(%d) NOT NULL)", d.c.Table, d.c.Payload),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

type pgProducer struct {
	d    *postgresDriver
	conn *pgx.Conn
	args []any
}

func (d *postgresDriver) producer(ctx context.Context) (producer, error) {
	conn, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgProducer{d: d, conn: conn}, nil
}

func (p *pgProducer) send(_ context.Context, first int64, n int, ts int64, acked func(int64, time.Duration)) error {
	var q strings.Builder
	fmt.Fprintf(&q, "INSERT INTO %s (id, ts, payload) VALUES ", p.d.c.Table)
	p.args = p.args[:0]
	for i := range n {
		if i > 0 {
			q.WriteString(",")
		}
		fmt.Fprintf(&q, "($%d, $%d, $%d)", 3*i+1, 3*i+2, 3*i+3)
		payload := p.d.payload
		if p.d.c.Verify {
			payload = string(filler(first+int64(i), p.d.c.Payload-16, true))
		}
		p.args = append(p.args, first+int64(i), ts, payload)
	}
	t0 := time.Now()
	if _, err := p.conn.Exec(stmtCtx, q.String(), p.args...); err != nil {
		return err
	}
	acked(first, time.Since(t0))
	return nil
}

func (p *pgProducer) flush(context.Context, func(int64, time.Duration)) error { return nil }
func (p *pgProducer) close()                                                  { p.conn.Close(context.Background()) }

type pgConsumer struct {
	d    *postgresDriver
	conn *pgx.Conn
}

func (d *postgresDriver) consumer(ctx context.Context) (consumer, error) {
	conn, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConsumer{d: d, conn: conn}, nil
}

func (c *pgConsumer) take(ctx context.Context) (id, ts int64, ok bool, err error) {
	dest := []any{&id, &ts}
	var payload []byte
	if c.d.c.Verify {
		dest = append(dest, &payload)
	}
	err = c.conn.QueryRow(stmtCtx, c.d.take).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		idle(ctx, time.Millisecond) // nothing to take: no blocking wait in this pattern
		return 0, 0, false, nil
	}
	if err == nil {
		err = checkFiller(c.d.c, id, payload)
	}
	return id, ts, err == nil, err
}

func (c *pgConsumer) close() { c.conn.Close(context.Background()) }
