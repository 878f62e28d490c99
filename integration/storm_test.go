package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Storm settings: a server that reaps abandoned handshakes after 1 s and
// serves at most 48 connections, 5 of them held by established clients
// through the storm; attempts at most 128 at a time (the test's own file
// descriptors), so that the holders among them keep the server full and
// the refusal path runs.
const (
	stormMaxConns    = 48
	stormHandshake   = time.Second
	stormInflight    = 128
	stormLoadClients = 4 // established clients running queries
	stormIdleClients = 1 // an established client that stays idle
)

// stormKind is what one connection attempt does.
type stormKind int

const (
	stormCloseAtOnce stormKind = iota // connect and close without reading the greeting
	stormHalfLogin                    // read the greeting, send half a handshake response, close
	stormHold                         // read the greeting and never answer: the server must close
	stormLogin                        // log in, COM_PING, COM_QUIT (three times in six)
)

func (k stormKind) String() string {
	return [...]string{"close at once", "half a login", "hold", "login"}[k]
}

func stormKindOf(i int) stormKind { return stormKind(min(i%6, int(stormLogin))) }

// stormOutcome is what the server did with one attempt.
type stormOutcome int

const (
	outAbandoned stormOutcome = iota // the client went away (close at once, half a login)
	outReaped                        // closed by the server after --handshake-timeout: held without answering, or a handshake a loaded machine did not finish in time
	outServed                        // logged in and pinged
	outRefused                       // ERROR 1040 (08004) Too many connections, then a clean close
	outFailed                        // anything else: a reset, a hang, a wrong answer
	outCount
)

// TestConnectionStorm: a burst of connection attempts, half of them
// abandoned in the handshake (closed at once, closed after half a handshake
// response, or held without an answer until --handshake-timeout), the
// rest logging in. Meanwhile established clients keep being served (their
// latency is logged, before and during the storm); attempts over
// --max-connections get ERROR 1040 and a clean close (never a reset or a
// hang); and afterwards the server is back to its baseline: its sockets,
// file descriptors and OS threads (from /proc; goroutines are not
// exported: a connection's goroutine ends with its socket, and every slot
// of --max-connections is free again, which the test checks by filling
// them). The refusals are logged at most once per 10 s, not once each.
// Q4MPROXY_STORM sets the number of attempts (1,000 by default;
// 5,000 is the long mode).
func TestConnectionStorm(t *testing.T) {
	attempts := 1000
	if v := os.Getenv("Q4MPROXY_STORM"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 6 {
			t.Fatalf("Q4MPROXY_STORM=%q: want a number of attempts (at least 6)", v)
		}
		attempts = n
	}
	stormFDLimit(t, 4*stormInflight+256)

	s := startServer(t, "--max-connections", strconv.Itoa(stormMaxConns), "--handshake-timeout", stormHandshake.String())
	pid := s.cmd.Process.Pid
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/fd", pid)); err != nil {
		t.Skipf("no /proc/PID/fd: %v", err)
	}

	// The established clients: some run queue statements in a loop, one
	// stays idle.
	setup := stormClient(t, s)
	if res := setup.query("CREATE TABLE storm (v INT) ENGINE=queue"); res.err != nil {
		t.Fatal(res.err)
	}
	setup.c.Close()
	idle := stormClient(t, s)
	var load []*rawConn
	for range stormLoadClients {
		load = append(load, stormClient(t, s))
	}

	var phase atomic.Int32 // 0 before the storm, 1 during, 2 after
	var stop atomic.Bool
	type sample struct {
		phase int32
		d     time.Duration
	}
	samples := make([][]sample, len(load))
	inserted := make([]int, len(load))
	consumed := make([]int, len(load))
	loadErr := make([]error, len(load))
	var warm sync.WaitGroup // each load client's first 50 statements
	var loadDone sync.WaitGroup
	for i, r := range load {
		warm.Add(1)
		loadDone.Add(1)
		go func() {
			defer loadDone.Done()
			warming := true
			defer func() {
				if warming {
					warm.Done()
				}
			}()
			run := func(q string) (rawResult, error) {
				start := time.Now()
				ph := phase.Load()
				res, err := r.tryQuery(q)
				if err == nil && res.err != nil {
					err = fmt.Errorf("%s: %v", q, res.err)
				}
				samples[i] = append(samples[i], sample{ph, time.Since(start)})
				if warming && len(samples[i]) >= 50 {
					warming = false
					warm.Done()
				}
				return res, err
			}
			for n := 0; !stop.Load(); n++ {
				if _, err := run(fmt.Sprintf("INSERT INTO storm VALUES (%d)", i*1_000_000+n)); err != nil {
					loadErr[i] = err
					return
				}
				inserted[i]++
				res, err := run("SELECT queue_wait('storm', 0)")
				if err != nil {
					loadErr[i] = err
					return
				}
				if len(res.text) == 1 && res.text[0][0] == "1" {
					if _, err := run("SELECT queue_end()"); err != nil {
						loadErr[i] = err
						return
					}
					consumed[i]++
				}
			}
		}()
	}
	stopLoad := func() {
		stop.Store(true)
		loadDone.Wait()
	}
	defer stopLoad()
	warm.Wait()

	// The baseline, with the established clients connected and busy.
	base := procUsage(t, s)
	t.Logf("baseline: %v", base)

	// The storm.
	var counts [outCount]atomic.Int64
	var byKind [4][outCount]atomic.Int64
	var failMu sync.Mutex
	var failures []string
	var maxReap atomic.Int64
	sem := make(chan struct{}, stormInflight)
	var wg sync.WaitGroup
	phase.Store(1)
	stormStart := time.Now()
	for i := range attempts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			kind := stormKindOf(i)
			out, took, err := stormAttempt(s.addr, kind)
			if out == outReaped {
				for d := int64(took); ; {
					m := maxReap.Load()
					if d <= m || maxReap.CompareAndSwap(m, d) {
						break
					}
				}
			}
			counts[out].Add(1)
			byKind[kind][out].Add(1)
			if out == outFailed {
				failMu.Lock()
				failures = append(failures, fmt.Sprintf("attempt %d (%v): %v", i, kind, err))
				failMu.Unlock()
			}
		}()
	}
	wg.Wait()
	stormTook := time.Since(stormStart)
	phase.Store(2)

	t.Logf("storm: %d attempts in %v (at most %d at a time): %d served, %d refused with 1040, %d abandoned by the client, %d held and closed by the server (the last after %v), %d failed",
		attempts, stormTook.Round(time.Millisecond), stormInflight, counts[outServed].Load(), counts[outRefused].Load(),
		counts[outAbandoned].Load(), counts[outReaped].Load(), time.Duration(maxReap.Load()).Round(time.Millisecond), counts[outFailed].Load())
	for k := range byKind {
		t.Logf("  %-13v served %d, refused %d, abandoned %d, reaped %d, failed %d", stormKind(k),
			byKind[k][outServed].Load(), byKind[k][outRefused].Load(), byKind[k][outAbandoned].Load(), byKind[k][outReaped].Load(), byKind[k][outFailed].Load())
	}
	if n := len(failures); n > 0 {
		t.Errorf("%d attempts got neither a greeting nor a clean ERROR 1040 (or were not closed in time); the first:\n%s", n, strings.Join(failures[:min(n, 20)], "\n"))
	}
	if counts[outRefused].Load() == 0 {
		t.Errorf("no attempt was refused: the storm did not reach --max-connections %d", stormMaxConns)
	}
	if counts[outServed].Load() == 0 {
		t.Errorf("no attempt in the storm logged in")
	}

	// Back to the baseline: every socket of the storm closed, the other
	// file descriptors as before (the store's own files, which Pebble
	// opens and closes as the established clients' writes flush and
	// compact, are not the storm's), no more threads than the Go runtime
	// may have started for the burst: it keeps idle threads, and on a
	// loaded machine a thread descheduled in a system call makes it start
	// another, but it does not leak them per connection (the storm served
	// and refused hundreds).
	const threadSlack = 32
	var after usage
	deadline := time.Now().Add(time.Minute + 2*stormHandshake)
	for {
		after = procUsage(t, s)
		if after.sockets == base.sockets && after.others == base.others && after.threads <= base.threads+threadSlack {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back to the baseline after the storm: %v, baseline %v\nfile descriptors now:\n%s", after, base, strings.Join(after.targets, "\n"))
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	t.Logf("after the storm: %v (back to the baseline %v after %v)", after, base, time.Since(stormStart.Add(stormTook)).Round(time.Millisecond))

	// Every slot is free again: as many new connections as the baseline
	// leaves room for log in, and one more gets ERROR 1040.
	free := stormMaxConns - stormLoadClients - stormIdleClients
	preFill := procUsage(t, s)
	var fill []*rawConn
	eventually(t, time.Minute, fmt.Sprintf("%d free connection slots", free), func() bool {
		for len(fill) < free {
			dialed := time.Now()
			r, refused, err := tryRawLogin(s)
			if refused {
				return false // a slot not yet given back: try again
			}
			if err != nil && time.Since(dialed) >= stormHandshake && (errors.Is(err, io.EOF) || isReset(err)) {
				return false // closed by the handshake timeout on a loaded machine: again
			}
			if err != nil {
				t.Fatalf("filling the free slots: %v", err)
			}
			fill = append(fill, r)
			t.Cleanup(func() { r.c.Close() })
		}
		return true
	})
	if _, refused, err := tryRawLogin(s); !refused {
		t.Errorf("connection %d of --max-connections %d: %v, want ERROR 1040", stormMaxConns+1, stormMaxConns, err)
	}
	for _, r := range fill {
		r.c.Close()
	}
	eventually(t, time.Minute, "the filling connections to close", func() bool {
		return procUsage(t, s).sockets == preFill.sockets
	})

	// The refusals are in the log, but not one line each: the first, then
	// at most one per 10 s.
	lines := strings.Count(s.logs.String(), "connection refused: too many connections")
	if most := 2 + int(time.Since(stormStart)/(10*time.Second)); lines == 0 || lines > most {
		t.Errorf("%d log lines about %d refused connections; want at least 1 and at most %d (rate-limited)", lines, counts[outRefused].Load()+1, most)
	}
	t.Logf("%d log lines about %d refused connections", lines, counts[outRefused].Load()+1)
	byMsg := map[string]int{}
	for _, l := range strings.Split(s.logs.String(), "\n") {
		var rec struct{ Level, Msg string }
		_ = json.Unmarshal([]byte(l), &rec)
		byMsg[rec.Level+" "+rec.Msg]++
	}
	t.Logf("the server's log: %v", byMsg)

	// The established clients were served throughout.
	stopLoad()
	for i, err := range loadErr {
		if err != nil {
			t.Errorf("established client %d: %v", i, err)
		}
	}
	idle.t = t
	idle.alive("the storm")
	var before, during []time.Duration
	for i, ss := range samples {
		n := len(during)
		for _, sm := range ss {
			switch sm.phase {
			case 0:
				before = append(before, sm.d)
			case 1:
				during = append(during, sm.d)
			}
		}
		if n = len(during) - n; n < 3 {
			t.Errorf("established client %d ran %d statements during the %v storm", i, n, stormTook)
		}
	}
	t.Logf("established clients' statements: before the storm %s; during the storm %s", latencySummary(before), latencySummary(during))
	// What this catches, with the count above, is clients starved by the
	// storm, not slowness: the bound is 2 s, or 20 times the p99 measured
	// just before the storm when the machine is so loaded (other test
	// binaries, their fsyncs) that statements were slow already.
	if p99, most := percentile(during, 99), max(2*time.Second, 20*percentile(before, 99)); p99 > most {
		t.Errorf("p99 latency during the storm %v, want under %v (p99 before the storm %v)", p99, most, percentile(before, 99))
	}
	ins, cons := 0, 0
	for i := range load {
		ins += inserted[i]
		cons += consumed[i]
	}
	if got, err := strconv.Atoi(idle.value("SELECT COUNT(*) FROM storm")); err != nil || got != ins-cons {
		t.Errorf("%s rows left in storm after %d inserts and %d consumes (%v)", idle.value("SELECT COUNT(*) FROM storm"), ins, cons, err)
	}
	t.Logf("established clients: %d rows inserted, %d consumed", ins, cons)

	serverHealthy(t, s)
}

// stormAttempt makes one connection attempt of the given kind and says
// what the server did; took is how long a held connection stayed open.
func stormAttempt(addr string, kind stormKind) (out stormOutcome, took time.Duration, err error) {
	dialed := time.Now()
	// reaped reports whether err is the server closing a handshake that
	// took its whole --handshake-timeout (counted from the accept, after
	// dialed): on a loaded machine a login can, and the server must then
	// close it. Closed sooner, it is a failure.
	reaped := func(err error) bool {
		return (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)) && time.Since(dialed) >= stormHandshake
	}
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		return outFailed, 0, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if kind == stormCloseAtOnce {
		return outAbandoned, 0, nil
	}
	r := &rawConn{c: c, r: bufio.NewReader(c)}
	start := time.Now()
	first, _, err := r.readPacket()
	if err != nil && reaped(err) {
		return outReaped, time.Since(dialed), nil
	}
	if err != nil {
		return outFailed, 0, fmt.Errorf("reading the greeting: %w", err)
	}
	if len(first) > 0 && first[0] == 0xff {
		if err := refusedCleanly(r, first); err != nil {
			return outFailed, 0, err
		}
		return outRefused, 0, nil
	}
	if len(first) == 0 || first[0] != 10 {
		return outFailed, 0, fmt.Errorf("not a greeting: %q", first)
	}
	switch kind {
	case stormHalfLogin:
		p := packet(handshakeResponse("root"), 1)
		if err := r.writeRaw(p[:len(p)/2]); err != nil {
			return outFailed, 0, fmt.Errorf("writing half a login: %w", err)
		}
		return outAbandoned, 0, nil
	case stormHold:
		// The server must close the connection after its handshake
		// timeout: EOF, within the read deadline (ioTimeout).
		_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
		n, err := io.Copy(io.Discard, r.r)
		took := time.Since(start)
		if err != nil || n != 0 {
			return outFailed, took, fmt.Errorf("held connection: %d more bytes, %v after %v; want EOF after the handshake timeout", n, err, took)
		}
		return outReaped, took, nil
	}
	if err := r.writeRaw(packet(handshakeResponse("root"), 1)); err != nil {
		if reaped(err) {
			return outReaped, time.Since(dialed), nil
		}
		return outFailed, 0, fmt.Errorf("writing the login: %w", err)
	}
	if err := r.finishLogin(); err != nil {
		if reaped(err) {
			return outReaped, time.Since(dialed), nil
		}
		return outFailed, 0, err
	}
	if err := r.writeRaw(packet([]byte{comPing}, 0)); err != nil {
		return outFailed, 0, fmt.Errorf("COM_PING: %w", err)
	}
	if res, err := r.result(); err != nil || !res.ok {
		return outFailed, 0, fmt.Errorf("COM_PING: %+v %v", res, err)
	}
	_ = r.writeRaw(packet([]byte{comQuit}, 0))
	return outServed, 0, nil
}

const comPing = 0x0e

// refusedCleanly checks that first, the server's first packet, is ERROR
// 1040 (08004) Too many connections and that the server then closes the
// connection cleanly (EOF, not a reset).
func refusedCleanly(r *rawConn, first []byte) error {
	e := parseErr(first)
	if e.code != 1040 || e.state != "08004" || e.msg != "Too many connections" {
		return fmt.Errorf("refused with %v, want ERROR 1040 (08004): Too many connections", e)
	}
	_ = r.c.SetReadDeadline(time.Now().Add(ioTimeout))
	if n, err := io.Copy(io.Discard, r.r); err != nil || n != 0 {
		return fmt.Errorf("after ERROR 1040: %d more bytes, %v; want a clean close", n, err)
	}
	return nil
}

// finishLogin reads the server's answers to a handshake response until OK,
// answering an auth switch (the empty password).
func (r *rawConn) finishLogin() error {
	for {
		p, seq, err := r.readPacket()
		if err != nil {
			return fmt.Errorf("login: %w", err)
		}
		switch {
		case len(p) > 0 && p[0] == 0x00:
			return nil
		case len(p) > 0 && p[0] == 0xfe:
			if err := r.writeRaw(packet(nil, seq+1)); err != nil {
				return fmt.Errorf("login: %w", err)
			}
		case len(p) > 0 && p[0] == 0xff:
			return fmt.Errorf("login: %v", parseErr(p))
		default:
			return fmt.Errorf("login: unexpected packet %q", p)
		}
	}
}

// stormClient logs in one of the storm test's established clients; again
// when the server closed the handshake after its (1 s) timeout, which a
// loaded machine can make a login outlast, for at most a minute.
func stormClient(t *testing.T, s *server) *rawConn {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		dialed := time.Now()
		r, refused, err := tryRawLogin(s)
		if err == nil && !refused {
			r.t = t
			return r
		}
		if refused || time.Since(dialed) < stormHandshake || time.Now().After(deadline) {
			t.Fatalf("logging in: refused %v, %v (after %v)", refused, err, time.Since(dialed))
		}
		t.Logf("a login closed by the handshake timeout (after %v): again", time.Since(dialed).Round(time.Millisecond))
	}
}

// tryRawLogin logs in; refused reports ERROR 1040 (checked to be clean).
func tryRawLogin(s *server) (r *rawConn, refused bool, err error) {
	c, err := net.DialTimeout("tcp", s.addr, ioTimeout)
	if err != nil {
		return nil, false, err
	}
	r = &rawConn{c: c, r: bufio.NewReader(c)}
	first, _, err := r.readPacket()
	if err == nil && len(first) > 0 && first[0] == 0xff {
		err = refusedCleanly(r, first)
		c.Close()
		return nil, err == nil, err
	}
	if err == nil && (len(first) == 0 || first[0] != 10) {
		err = fmt.Errorf("not a greeting: %q", first)
	}
	if err == nil {
		err = r.writeRaw(packet(handshakeResponse("root"), 1))
	}
	if err == nil {
		err = r.finishLogin()
	}
	if err != nil {
		c.Close()
		return nil, false, err
	}
	return r, false, nil
}

// tryQuery is query without t: for goroutines other than the test's.
func (r *rawConn) tryQuery(q string) (rawResult, error) {
	if err := r.writeRaw(packet(append([]byte{comQuery}, q...), 0)); err != nil {
		return rawResult{}, err
	}
	return r.result()
}

// usage is what a process holds, from /proc.
type usage struct {
	threads int
	fds     int
	sockets int
	store   int      // files under the data directory (Pebble's)
	others  int      // the rest: neither sockets nor the store's files
	targets []string // what each file descriptor points to
}

func (u usage) String() string {
	return fmt.Sprintf("%d OS threads, %d file descriptors (%d sockets, %d files of the store, %d others)", u.threads, u.fds, u.sockets, u.store, u.others)
}

// procUsage reads what the server s holds.
func procUsage(t *testing.T, s *server) usage {
	t.Helper()
	pid := s.cmd.Process.Pid
	dataDir, err := filepath.EvalSymlinks(s.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	_, threads, err := soakProcStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	u := usage{threads: int(threads)}
	for _, e := range ents {
		target, err := os.Readlink(dir + "/" + e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue // closed since the listing
		}
		if err != nil {
			t.Fatal(err)
		}
		u.fds++
		switch {
		case strings.HasPrefix(target, "socket:"):
			u.sockets++
		case strings.HasPrefix(target, dataDir+string(filepath.Separator)):
			u.store++
		default:
			u.others++
		}
		u.targets = append(u.targets, e.Name()+" -> "+target)
	}
	return u
}

// stormFDLimit raises the test process's soft limit on open files to at
// least need (within the hard limit), so that the storm's own sockets fit;
// the server, started after, inherits it.
func stormFDLimit(t *testing.T, need uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Logf("getrlimit: %v", err)
		return
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		t.Skipf("the hard limit on open files (%d) is below the %d the storm needs", lim.Max, need)
	}
	old := lim.Cur
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("raising the limit on open files from %d to %d: %v", old, need, err)
	}
	t.Logf("raised the soft limit on open files from %d to %d", old, need)
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func latencySummary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no statements"
	}
	return fmt.Sprintf("%d statements, p50 %v, p99 %v, max %v", len(ds),
		percentile(ds, 50).Round(10*time.Microsecond), percentile(ds, 99).Round(10*time.Microsecond), slices.Max(ds).Round(10*time.Microsecond))
}
