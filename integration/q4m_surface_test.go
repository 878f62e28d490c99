package integration

import (
	"strings"
	"testing"
	"time"
)

// surfaceScripts are the Perl DBI scripts in testdata that check Q4M's
// surface beyond plain queues: conditional subscriptions, relaying,
// statistics, compaction, ALTER TABLE and large rows. Each follows one of
// Q4M's own test files (named in the comment); the scripts are written from
// the spec, not copied. Sizes can be changed through the environment
// (BC_ROWS, PQ_ROWS, CC_ROWS, CC_CONSUMERS, LD_ROWS), which the scripts
// inherit; the defaults are Q4M's sizes or close to them (BC_ROWS 2000 per
// round, PQ_ROWS 20000).
var surfaceScripts = []string{
	"cond.pl",          // 02-queue-cond: conditions, waits woken by other processes, release on exit, quirks
	"blob_cond.pl",     // 04-blob-cond: INT after a BLOB, rowids across queue_compact, queue_stats
	"trans.pl",         // 07-trans: queue_rowid errors, queue_set_srcid duplicate suppression
	"pqueue.pl",        // 09-pqueue-single-table: prio 0 before prio 1, FIFO within each
	"wake_listener.pl", // 09-pqueue-single-table-wake-listener: priority for a sleeping waiter
	"surface.pl",       // plugins, SHOW ENGINE QUEUE STATUS, SHOW TABLE STATUS, ENGINES, VARIABLES
	"alter.pl",         // 14-alter-table: ADD/DROP COLUMN while a row is owned
	"compact.pl",       // 11-conc-compact(-w-insert): DELETE 74%, consumers, inserts, queue_compact
	"largedata.pl",     // 10-largedata: 4 MB rows, max_allowed_packet
}

// heavyScripts move tens of megabytes or tens of thousands of rows: they
// run against the server built without the race detector, which is several
// times faster (the race detector still watches every other test's server).
var heavyScripts = map[string]bool{"blob_cond.pl": true, "pqueue.pl": true, "compact.pl": true, "largedata.pl": true}

// TestSurfacePerl runs each script in surfaceScripts against a fresh server
// with every driver in perlDrivers.
func TestSurfacePerl(t *testing.T) {
	for _, script := range surfaceScripts {
		t.Run(strings.TrimSuffix(script, ".pl"), func(t *testing.T) {
			if script == "largedata.pl" {
				standaloneOnly(t, "@@max_allowed_packet is the upstream's") // checks q4mproxy's limit
			}
			for _, d := range perlDrivers {
				t.Run(d, func(t *testing.T) {
					start := startServer
					if heavyScripts[script] {
						start = startFastServer
					}
					s := start(t)
					began := time.Now()
					out := s.perl(t, d, script)
					// s.perl fails on a non-zero exit; also insist that the
					// script ran to done_testing and printed no failure.
					if !tapPlan.MatchString(out) || tapNotOK.MatchString(out) {
						t.Fatalf("perl %s (%s): incomplete or failing TAP:\n%s", script, d, out)
					}
					for _, l := range strings.Split(out, "\n") {
						if strings.HasPrefix(l, "#") {
							t.Log(l)
						}
					}
					t.Logf("%s (%s) took %v", script, d, time.Since(began).Round(time.Millisecond))
				})
			}
		})
	}
}

// TestSurfacePerlRelayMarksRestart checks that queue_set_srcid's marks
// survive a clean restart and a kill -9 of the server (which the Perl
// scripts cannot do themselves): relay_restart.pl records marks, the server
// restarts, and the script checks that the marks still drop duplicates.
func TestSurfacePerlRelayMarksRestart(t *testing.T) {
	for _, how := range []string{"sigterm", "sigkill"} {
		t.Run(how, func(t *testing.T) {
			for _, d := range perlDrivers {
				t.Run(d, func(t *testing.T) {
					s := startServer(t)
					for i, phase := range []string{"before", "after"} {
						if i == 1 {
							if how == "sigkill" {
								s.kill()
							}
							s.restart()
						}
						out := s.perl(t, d, "relay_restart.pl", "PHASE="+phase)
						if !tapPlan.MatchString(out) || tapNotOK.MatchString(out) {
							t.Fatalf("perl relay_restart.pl PHASE=%s (%s): incomplete or failing TAP:\n%s", phase, d, out)
						}
					}
				})
			}
		})
	}
}
