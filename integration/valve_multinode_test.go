package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A valve with the queues in the upstream (--queue-store upstream): every
// node is given the same valve, one node at a time runs it (elected
// through the upstream's GET_LOCK), and the others stand by.

// mvTakeoverBound is how long after the valve's node dies another node
// runs the valve: the upstream frees the dead node's lock when it sees its
// connection close (at once for a killed process), and a standing-by node
// asks for the lock every second.
const mvTakeoverBound = 5 * time.Second

// mvLeader returns the index of the node whose log says it was elected
// for the valve, waiting for one; it fails if several were.
func mvLeader(t *testing.T, nodes []*server, skip map[int]bool) int {
	t.Helper()
	leader := -1
	eventually(t, time.Minute, "a node to be elected for the valve", func() bool {
		leader = -1
		for i, n := range nodes {
			if skip[i] {
				continue
			}
			if strings.Contains(n.logs.String(), `"msg":"valve elected"`) {
				if leader >= 0 {
					t.Fatalf("nodes %d and %d both run the valve", leader, i)
				}
				leader = i
			}
		}
		return leader >= 0
	})
	return leader
}

// TestValveMultiNode: two nodes with the same valve. One runs it, the
// other stands by (SHOW VALVE STATUS empty there). Messages inserted on
// either node are throttled per destination as on one node; consumers on
// the standing-by node consume from q_timed, and the valve sees those
// consumes ('dequeue' rows, one per message; flights land so releases go
// on). An emergency consumed on the standing-by node opens the drop
// window. Then the valve's node is killed (kill -9) while messages are
// scheduled: the other node takes over within mvTakeoverBound, and every
// acknowledged message arrives exactly once (a consume cut off by the
// kill may come again, as on one node), at the rate, across the takeover;
// each consume of it gets one 'dequeue' row, from one node or the other.
func TestValveMultiNode(t *testing.T) {
	// mvRateConfig with 'dequeue' rows: the valve's node writes them for
	// consumes made on any node, so their count shows that the valve saw
	// every consume once.
	config := strings.Replace(mvRateConfig, "drop_on_emergency = true", "drop_on_emergency = true\nlog_dequeue = true", 1)
	path := filepath.Join(t.TempDir(), "valve.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes, _ := startNodes(t, 2, "--config", path)
	mvCreateTables(t, nodes[0])
	li := mvLeader(t, nodes, nil)
	leader, standby := nodes[li], nodes[1-li]
	if _, ok := standby.logs.waitFor(time.Minute, func(l string) bool { return strings.Contains(l, `"msg":"valve standing by"`) }); !ok {
		t.Fatal("the other node does not report standing by")
	}
	ldb, sdb := leader.open(t), standby.open(t)
	eventually(t, time.Minute, "the tables on the standing-by node", func() bool {
		_, err := sdb.Exec("SELECT COUNT(*) FROM q_incoming")
		return err == nil
	})

	// A client of the standing-by node does not get q_incoming's rows:
	// the valve reserved the table for itself on every node.
	// (On a connection of its own: queue_wait enters owner mode, where a
	// SELECT sees only the owned row.)
	var r int
	check := standby.conn(t)
	if err := check.QueryRowContext(t.Context(), "SELECT queue_wait('q_incoming', 0)").Scan(&r); err != nil || r != 0 {
		t.Fatalf("queue_wait('q_incoming') on the standing-by node = %d, %v; want 0", r, err)
	}
	check.Close()

	// Messages inserted on both nodes, consumers on the standing-by node.
	col := &mvCollector{}
	pool := standby.mvConsume(t, col, 3)
	dests := []string{"alpha", "beta", "gamma"}
	msgs := mvMessages(dests, 8)
	ins := []*mvInserter{leader.mvInserter(t), standby.mvInserter(t)}
	start := time.Now()
	for i, m := range msgs {
		ins[i%2].mustInsert(t, "q_incoming", m)
	}
	decided := mvDecided(t, ldb, dests, 8, start)
	eventually(t, time.Minute, "all 24 messages to arrive", func() bool { return col.has(msgs) })
	mvDrained(t, ldb, time.Minute)
	if st := mvValveStatus(t, sdb); len(st) != 0 {
		t.Errorf("SHOW VALVE STATUS on the standing-by node has %d rows, want none", len(st))
	}
	st := mvValveStatus(t, ldb)
	for _, d := range dests {
		mvWantSplit(t, st, d, 2, 6, decided)
	}
	byDest := mvCheckDelivery(t, col.snapshot(), msgs, nil)
	for d, gs := range byDest {
		gap := mvCheckRate(t, d, gs)
		t.Logf("destination %s: smallest distance between arrivals 2 apart %v", d, gap.Round(time.Millisecond))
	}
	// One 'dequeue' row per message consumed on the other node.
	eventually(t, time.Minute, "24 'dequeue' rows", func() bool {
		return mvCount(t, ldb, "SELECT COUNT(*) FROM q_statslog WHERE action = 'dequeue'") >= 24
	})
	if n := mvCount(t, ldb, "SELECT COUNT(*) FROM q_statslog WHERE action = 'dequeue'"); n != 24 {
		t.Errorf("%d 'dequeue' rows, want 24 (one per consume on the standing-by node)", n)
	}

	// drop_on_emergency: an emergency consumed on the standing-by node.
	in := leader.mvInserter(t)
	vipEmerg := mvSent{dest: "vip", seq: 0, payload: mvPayload()}
	in.mustInsert(t, "q_emerg", vipEmerg)
	eventually(t, time.Minute, "the vip emergency to be consumed", func() bool { return col.has([]mvSent{vipEmerg}) })
	eventually(t, time.Minute, "the valve to open vip's drop window", func() bool {
		return !mvValveStatus(t, ldb)["vip"].dropUntil.IsZero()
	})
	dropped := mvSent{dest: "vip", seq: 1, payload: mvPayload()}
	in.mustInsert(t, "q_incoming", dropped)
	eventually(t, time.Minute, "the valve to decide on the vip message", func() bool {
		st := mvValveStatus(t, ldb)["vip"]
		return st.admitted+st.throttled+st.dropped > 0
	})
	mvWantStatus(t, mvValveStatus(t, ldb), "vip", 0, 0, 1, 0, 0)

	// Takeover: 2 destinations x 8 messages, the leader killed once some
	// arrived and more are scheduled.
	wave := mvMessages([]string{"w1", "w2"}, 8)
	standby.mvInserter(t).mustInsert(t, "q_incoming", wave...)
	eventually(t, time.Minute, "4 of the wave to arrive", func() bool {
		n := 0
		for _, g := range col.snapshot() {
			if strings.HasPrefix(g.dest, "w") {
				n++
			}
		}
		return n >= 4
	})
	if s := mvValveStatus(t, ldb); s["w1"].scheduled+s["w2"].scheduled == 0 {
		t.Fatal("nothing scheduled when the valve's node is killed")
	}
	killed := time.Now()
	leader.kill()
	if _, ok := standby.logs.waitFor(mvTakeoverBound, func(l string) bool { return strings.Contains(l, `"msg":"valve elected"`) }); !ok {
		t.Fatalf("the standing-by node did not take the valve over within %v of the kill", mvTakeoverBound)
	}
	t.Logf("takeover %v after the kill", time.Since(killed).Round(time.Millisecond))
	eventually(t, time.Minute, "the whole wave to arrive after the takeover", func() bool { return col.has(wave) })
	mvDrained(t, sdb, time.Minute)
	pool.stop()
	if errs := pool.errors(); len(errs) > 0 {
		t.Errorf("consumer errors: %v", errs)
	}
	var got []mvGot
	for _, g := range col.snapshot() {
		if strings.HasPrefix(g.dest, "w") {
			got = append(got, g)
		}
	}
	for d, gs := range mvCheckDelivery(t, got, wave, nil) {
		gap := mvCheckRate(t, d, gs)
		t.Logf("destination %s: smallest distance between arrivals 2 apart across the takeover %v", d, gap.Round(time.Millisecond))
	}
	st = mvValveStatus(t, sdb)
	if len(st) == 0 {
		t.Error("SHOW VALVE STATUS on the node that took over is empty")
	}
	// Every consume of the wave, before or after the kill, was seen once
	// by the valve of one node or the other: a consume the killed node
	// had read from the log but not stored the result of is handed to
	// its successor.
	dequeues := func() int {
		return mvCount(t, sdb, "SELECT COUNT(*) FROM q_statslog WHERE action = 'dequeue' AND destination = 'w1'") +
			mvCount(t, sdb, "SELECT COUNT(*) FROM q_statslog WHERE action = 'dequeue' AND destination = 'w2'")
	}
	eventually(t, time.Minute, "16 'dequeue' rows for the wave", func() bool { return dequeues() >= 16 })
	if n := dequeues(); n != 16 {
		t.Errorf("%d 'dequeue' rows for the wave's 16 consumes across the takeover, want 16", n)
	}
}

// TestValveMultiNodeOneRuns: three nodes with the default valve (--valve);
// stopping the running node (SIGTERM) hands the valve to another at once,
// and only one runs it at any time.
func TestValveMultiNodeOneRuns(t *testing.T) {
	nodes, _ := startNodes(t, 3, "--valve")
	mvCreateTables(t, nodes[0])
	gone := map[int]bool{}
	for range 2 {
		li := mvLeader(t, nodes, gone)
		gone[li] = true
		start := time.Now()
		nodes[li].stop()
		li2 := mvLeader(t, nodes, gone)
		t.Logf("node %d stopped; node %d runs the valve %v later", li, li2, time.Since(start).Round(time.Millisecond))
		db := nodes[li2].open(t)
		in := nodes[li2].mvInserter(t)
		m := mvSent{dest: "x", seq: 1, payload: mvPayload()}
		in.mustInsert(t, "q_incoming", m)
		eventually(t, time.Minute, "the message released", func() bool {
			return mvCount(t, db, "SELECT COUNT(*) FROM q_incoming") == 0 && mvCount(t, db, "SELECT COUNT(*) FROM q_timed") > 0
		})
		if _, err := db.Exec("DELETE FROM q_timed"); err != nil {
			t.Fatal(err)
		}
	}
}
