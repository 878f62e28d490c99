package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUpstreamStoreKeepalive reads, with getsockopt, the TCP options of
// every connection the running q4mproxy (a node of the upstream store, so
// with upstream sessions too) holds to its database: keepalive after 10 s
// idle, every 5 s, 3 probes; TCP_USER_TIMEOUT 20 s. The sockets are the
// process's own, borrowed with pidfd_getfd (q4mproxy is the test's child).
func TestUpstreamStoreKeepalive(t *testing.T) {
	s := startNode(t, newStoreName(t))
	c := newGConn(t, s, driverModes[1])
	c.exec("CREATE TABLE ka (v INT) ENGINE=queue")
	c.exec("INSERT INTO ka VALUES (1)")
	c.wantValue("1", "SELECT queue_wait('ka', 5)") // a store connection holds the row
	c.rows("SELECT User FROM mysql.user LIMIT 1")  // forwarded: an upstream session
	_, port, _ := strings.Cut(mariadbAddr(t), ":")
	fds := socketsTo(t, s.cmd.Process.Pid, port)
	if len(fds) < 2 {
		t.Fatalf("%d connections to the database found, want the store's and the session's", len(fds))
	}
	pidfd, err := unix.PidfdOpen(s.cmd.Process.Pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (Linux 5.6 or later needed)", err)
	}
	defer unix.Close(pidfd)
	want := []struct {
		name       string
		level, opt int
		v          int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 10},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 5},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3},
		{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 20000},
	}
	for _, fd := range fds {
		dup, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			t.Fatalf("pidfd_getfd(%d): %v", fd, err)
		}
		for _, w := range want {
			v, err := unix.GetsockoptInt(dup, w.level, w.opt)
			if err != nil || v != w.v {
				t.Errorf("q4mproxy's fd %d to the database: %s = %d, %v; want %d", fd, w.name, v, err, w.v)
			}
		}
		unix.Close(dup)
	}
	t.Logf("%d connections to the database checked", len(fds))
}

// socketsTo returns the file descriptors of process pid that are TCP
// connections to port (decimal) on the loopback.
func socketsTo(t *testing.T, pid int, port string) []int {
	t.Helper()
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "01" { // established only
			continue
		}
		if _, rport, ok := strings.Cut(f[2], ":"); ok && rport == fmt.Sprintf("%04X", p) {
			inodes[f[9]] = true
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			fd, _ := strconv.Atoi(e.Name())
			fds = append(fds, fd)
		}
	}
	return fds
}
