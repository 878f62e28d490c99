package netdial_test

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/q4mproxy/q4mproxy/internal/netdial"
)

// TestDialerSocketOptions dials a real listener and reads the options back
// from the kernel with getsockopt.
func TestDialerSocketOptions(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := netdial.DialContext(context.Background(), "tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, o := range socketOptions(t, c) {
		if o.got != o.want {
			t.Errorf("%s = %d, want %d", o.name, o.got, o.want)
		}
	}
}

type option struct {
	name      string
	got, want int
}

// socketOptions reads the keepalive options and TCP_USER_TIMEOUT of c.
func socketOptions(t *testing.T, c net.Conn) []option {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	opts := []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(netdial.KeepAliveIdle / time.Second)},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(netdial.KeepAliveInterval / time.Second)},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, netdial.KeepAliveCount},
		{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(netdial.UserTimeout / time.Millisecond)},
	}
	var out []option
	err = raw.Control(func(fd uintptr) {
		for _, o := range opts {
			v, err := unix.GetsockoptInt(int(fd), o.level, o.opt)
			if err != nil {
				t.Errorf("getsockopt %s: %v", o.name, err)
				continue
			}
			out = append(out, option{o.name, v, o.want})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if netdial.DeadAfter > 30*time.Second {
		t.Errorf("DeadAfter = %v, above the documented 30 s", netdial.DeadAfter)
	}
	return out
}
