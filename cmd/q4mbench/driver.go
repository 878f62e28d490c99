package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A driver moves messages through one kind of server: q4mproxy or any
// MySQL-protocol server (mysql), PostgreSQL (postgres) or RabbitMQ (amqp).
// Every driver moves the same messages: an id, the producer's clock in µs
// (ts) and filler up to --payload bytes in all.
type driver interface {
	// setup drops and creates the table (or queue) the run uses.
	setup(ctx context.Context) error
	// producer opens one producer connection.
	producer(ctx context.Context) (producer, error)
	// consumer opens one consumer connection.
	consumer(ctx context.Context) (consumer, error)
	// close releases what setup and the connections left.
	close()
}

// A producer sends messages on one connection; it is used by one goroutine.
type producer interface {
	// send sends the messages with ids [first, first+n), stamped ts, and
	// calls acked(first id, latency) for each acknowledgement it waited
	// for. A synchronous producer returns once all n were acknowledged;
	// one with a window of unacknowledged messages (amqp) returns once
	// the window has room.
	send(ctx context.Context, first int64, n int, ts int64, acked func(int64, time.Duration)) error
	// flush waits for the acknowledgements still outstanding.
	flush(ctx context.Context, acked func(int64, time.Duration)) error
	close()
}

// A consumer takes messages on one connection; it is used by one goroutine.
type consumer interface {
	// take takes one message; ok is false when none came within about a
	// second. The message is gone from the server (or acknowledged) when
	// take returns.
	take(ctx context.Context) (id, ts int64, ok bool, err error)
	close()
}

func newDriver(c *Config) (driver, error) {
	switch c.Driver {
	case "mysql":
		return newMySQL(c)
	case "postgres":
		return newPostgres(c)
	case "amqp":
		return newAMQP(c)
	}
	return nil, fmt.Errorf("unknown driver %q", c.Driver)
}

// encodeBody is a message as a broker carries it: id and ts, big-endian,
// then the filler (filler) up to size bytes.
func encodeBody(id, ts int64, size int, verify bool) []byte {
	b := make([]byte, 16, size)
	binary.BigEndian.PutUint64(b, uint64(id))
	binary.BigEndian.PutUint64(b[8:], uint64(ts))
	return append(b, filler(id, size-16, verify)...)
}

func decodeBody(b []byte) (id, ts int64, err error) {
	if len(b) < 16 {
		return 0, 0, fmt.Errorf("message of %d bytes, want at least 16", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// filler is the n bytes of a message after its id and ts: 'x's, or with
// --verify the id in decimal, a colon and letters that depend on the id,
// so that a payload cut, altered or delivered with another message's id
// is caught (checkFiller).
func filler(id int64, n int, verify bool) []byte {
	b := make([]byte, 0, n+24)
	if !verify {
		return append(b, strings.Repeat("x", n)...)
	}
	b = strconv.AppendInt(b, id, 10)
	b = append(b, ':')
	h := uint64(id)*0x9E3779B97F4A7C15 + 1
	for len(b) < n {
		h ^= h >> 29
		h *= 0xBF58476D1CE4E5B9
		b = append(b, 'a'+byte(h%26))
	}
	return b[:n]
}

// checkFiller reports a payload that is not the one message id was sent
// with (--verify).
func checkFiller(c *Config, id int64, got []byte) error {
	if !c.Verify {
		return nil
	}
	if want := filler(id, c.Payload-16, true); !bytes.Equal(got, want) {
		return fmt.Errorf("message %d: delivered with a payload of %d bytes that is not the one sent (%q, want %q)", id, len(got), got, want)
	}
	return nil
}

// verifyColumn is what a consumer's SELECT (or RETURNING) lists after id
// and ts: the payload, to check it, under --verify.
func verifyColumn(c *Config) string {
	if c.Verify {
		return ", payload"
	}
	return ""
}

// idle waits d or until ctx is done: a consumer with nothing to take on a
// server without a blocking wait.
func idle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
