package integration

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// closedAddr returns a loopback address that refuses connections for the
// rest of the test: a socket bound to it that never listens holds the
// port, so no other process can listen there meanwhile, as one could on
// a port merely found free. Connecting gets "connection refused".
func closedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
