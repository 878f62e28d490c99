package main

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// amqpDriver uses a durable RabbitMQ quorum queue: persistent messages,
// publisher confirms (at most --confirm-window unconfirmed per producer; 1
// awaits each confirm), consumers with manual acks and --prefetch. Each
// producer and consumer has a connection of its own, as each has one MySQL
// connection in the other drivers.
type amqpDriver struct {
	c *Config
}

func newAMQP(c *Config) (driver, error) {
	if _, err := amqp.ParseURI(c.DSN); err != nil {
		return nil, err
	}
	return &amqpDriver{c: c}, nil
}

func (d *amqpDriver) close() {}

func (d *amqpDriver) dial() (*amqp.Connection, *amqp.Channel, error) {
	conn, err := amqp.Dial(d.c.DSN)
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, ch, nil
}

func (d *amqpDriver) setup(context.Context) error {
	conn, ch, err := d.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := ch.QueueDelete(d.c.Table, false, false, false); err != nil {
		return err
	}
	_, err = ch.QueueDeclare(d.c.Table, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	return err
}

type amqpProducer struct {
	d       *amqpDriver
	conn    *amqp.Connection
	ch      *amqp.Channel
	pending []pendingConfirm // oldest first
}

type pendingConfirm struct {
	dc   *amqp.DeferredConfirmation
	id   int64
	sent time.Time
}

func (d *amqpDriver) producer(context.Context) (producer, error) {
	conn, ch, err := d.dial()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, err
	}
	return &amqpProducer{d: d, conn: conn, ch: ch}, nil
}

func (p *amqpProducer) send(ctx context.Context, first int64, n int, ts int64, acked func(int64, time.Duration)) error {
	for i := range int64(n) {
		msg := amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/octet-stream",
			Body: encodeBody(first+i, ts, p.d.c.Payload, p.d.c.Verify)}
		t0 := time.Now()
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, "", p.d.c.Table, false, false, msg)
		if err != nil {
			return err
		}
		p.pending = append(p.pending, pendingConfirm{dc: dc, id: first + i, sent: t0})
	}
	return p.awaitUntil(ctx, p.d.c.ConfirmWindow-1, acked)
}

// awaitUntil waits for the oldest confirms until at most left remain.
func (p *amqpProducer) awaitUntil(ctx context.Context, left int, acked func(int64, time.Duration)) error {
	for len(p.pending) > left {
		pc := p.pending[0]
		ok, err := pc.dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			if p.conn.IsClosed() { // the library nacks what was unconfirmed
				return fmt.Errorf("message %d: the connection closed before the broker confirmed it", pc.id)
			}
			return fmt.Errorf("message %d: the broker nacked it", pc.id)
		}
		acked(pc.id, time.Since(pc.sent))
		p.pending = p.pending[1:]
	}
	return nil
}

func (p *amqpProducer) flush(ctx context.Context, acked func(int64, time.Duration)) error {
	return p.awaitUntil(ctx, 0, acked)
}

func (p *amqpProducer) close() { p.conn.Close() }

type amqpConsumer struct {
	c          *Config
	conn       *amqp.Connection
	deliveries <-chan amqp.Delivery
	timer      *time.Timer
}

func (d *amqpDriver) consumer(context.Context) (consumer, error) {
	conn, ch, err := d.dial()
	if err != nil {
		return nil, err
	}
	if err := ch.Qos(d.c.Prefetch, 0, false); err != nil {
		conn.Close()
		return nil, err
	}
	deliveries, err := ch.Consume(d.c.Table, "", false, false, false, false, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &amqpConsumer{c: d.c, conn: conn, deliveries: deliveries, timer: time.NewTimer(time.Second)}, nil
}

func (c *amqpConsumer) take(ctx context.Context) (id, ts int64, ok bool, err error) {
	c.timer.Reset(time.Second)
	select {
	case m, open := <-c.deliveries:
		if !open {
			return 0, 0, false, fmt.Errorf("the broker closed the consumer")
		}
		id, ts, err := decodeBody(m.Body)
		if err != nil {
			return 0, 0, false, err
		}
		if err := checkFiller(c.c, id, m.Body[16:]); err != nil {
			return 0, 0, false, err
		}
		if c.c.Verify && m.DeliveryMode != amqp.Persistent {
			return 0, 0, false, fmt.Errorf("message %d: delivered with delivery mode %d, not persistent", id, m.DeliveryMode)
		}
		if err := m.Ack(false); err != nil {
			return 0, 0, false, err
		}
		return id, ts, true, nil
	case <-c.timer.C:
		return 0, 0, false, nil
	case <-ctx.Done():
		return 0, 0, false, nil
	}
}

func (c *amqpConsumer) close() { c.conn.Close() }
