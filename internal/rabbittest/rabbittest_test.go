package rabbittest

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The tests' node is set up as bench/compare's: the same rabbitmq.conf and
// enabled_plugins, and every variable of the script's environment for it.
func TestSetupMatchesBenchCompare(t *testing.T) {
	b, err := os.ReadFile("../../bench/compare")
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	conf := "printf '" + strings.ReplaceAll(config, "\n", `\n`) + "'"
	if !strings.Contains(script, conf) {
		t.Errorf("bench/compare does not write rabbitmq.conf with %s", conf)
	}
	if !strings.Contains(script, "echo '"+plugins+"' >\"$R/enabled_plugins\"") {
		t.Errorf("bench/compare does not enable the plugins %s", plugins)
	}
	ours := map[string]bool{}
	for _, kv := range nodeEnv("/d", "n@localhost", 1, 2, 3) {
		name, _, _ := strings.Cut(kv, "=")
		ours[name] = true
	}
	i := strings.Index(script, "RABBITMQ_NODENAME=")
	if i < 0 {
		t.Fatal("bench/compare: no RABBITMQ_NODENAME")
	}
	block := script[strings.LastIndex(script[:i], "\n"):]
	block = block[:strings.Index(block, `"$RABBIT_SERVER"`)]
	n := 0
	for _, word := range strings.Fields(block) {
		name, _, ok := strings.Cut(word, "=")
		if ok && name == strings.ToUpper(name) {
			n++
			if !ours[name] {
				t.Errorf("bench/compare sets %s for its node, the tests do not", name)
			}
		}
	}
	if n < 10 {
		t.Errorf("found %d variables in bench/compare's environment for its node, want at least 10", n)
	}
}

// A node takes a durable quorum queue, and Stop leaves nothing behind: no
// process of the node, no listener on its ports, not its epmd, not its
// files.
func TestStartStop(t *testing.T) {
	s := Start(t)
	conn, err := amqp.Dial(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("t", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("declaring a quorum queue: %v", err)
	}
	conn.Close()
	if procs := nodeProcs(s.Node); len(procs) == 0 {
		t.Fatalf("no process runs node %s", s.Node)
	}
	if !listens(strconv.Itoa(s.epmd)) {
		t.Fatalf("the node's epmd does not listen on port %d", s.epmd)
	}
	s.Stop()
	if procs := nodeProcs(s.Node); len(procs) > 0 {
		t.Errorf("processes %v of node %s live on after Stop", procs, s.Node)
	}
	for _, port := range []string{strings.TrimPrefix(s.Addr, "127.0.0.1:"), strconv.Itoa(s.epmd)} {
		if listens(port) {
			t.Errorf("port %s still listens after Stop", port)
		}
	}
	if _, err := os.Stat(s.dir); !os.IsNotExist(err) {
		t.Errorf("the node's directory is still there: %v", err)
	}
}

// nodeProcs are the pids of the processes started for node: those with
// its RABBITMQ_NODENAME in their environment (its epmd too).
func nodeProcs(node string) []int {
	var pids []int
	environs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range environs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "\x00RABBITMQ_NODENAME="+node+"\x00") {
			continue
		}
		if st, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "stat")); strings.Contains(string(st), ") Z ") {
			continue // dead, not yet reaped
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func listens(port string) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, 5*time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}
