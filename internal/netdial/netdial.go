// Package netdial dials q4mproxy's own connections to its database (the
// upstream queue store's pool, the upstream sessions that forward clients'
// statements) so that a database host that vanishes, or a connection left
// half-open by a network failure, is detected within DeadAfter instead of
// the kernel's defaults (two hours of idleness before the first keepalive
// probe, about fifteen minutes of retransmissions for unacknowledged data).
//
// Two TCP mechanisms bound it, both set on every TCP connection Dialer
// makes:
//
//   - keepalive: an idle connection is probed after KeepAliveIdle, then
//     every KeepAliveInterval; it is closed with an error when the probes
//     go unanswered (KeepAliveCount of them, or for UserTimeout);
//   - TCP_USER_TIMEOUT (Linux): a connection whose sent data (a query, a
//     COMMIT) stays unacknowledged for UserTimeout is closed with an error.
//
// A database process that hangs on a host that stays up is not detected
// by either (its kernel still answers); q4mproxy's /readyz pings it with a
// timeout of its own.
package netdial

import (
	"context"
	"net"
	"time"
)

// The keepalive and user timeout settings.
const (
	KeepAliveIdle     = 10 * time.Second
	KeepAliveInterval = 5 * time.Second
	KeepAliveCount    = 3
	UserTimeout       = 20 * time.Second
	// DeadAfter bounds how long a dead peer goes unnoticed: an idle
	// connection's last probe fails KeepAliveIdle + KeepAliveCount *
	// KeepAliveInterval after the last sign of life (UserTimeout ends it
	// sooner, at the first probe past it), a busy one's data UserTimeout
	// after it was sent.
	DeadAfter = KeepAliveIdle + KeepAliveCount*KeepAliveInterval
)

// Dialer returns a dialer with the keepalive and user timeout above, which
// gives up connecting after timeout (zero: no limit but the context's).
func Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     KeepAliveIdle,
			Interval: KeepAliveInterval,
			Count:    KeepAliveCount,
		},
		Control: setUserTimeout,
	}
}

// DialContext dials with Dialer(timeout).
func DialContext(ctx context.Context, network, addr string, timeout time.Duration) (net.Conn, error) {
	return Dialer(timeout).DialContext(ctx, network, addr)
}
