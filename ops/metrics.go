package ops

import (
	"sort"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The metrics the collector reads at scrape time. Names follow Prometheus'
// conventions: q4mproxy_ prefix, base units (seconds, bytes), _total for
// counters.
var (
	tableLabels = []string{"db", "table"}

	descRows      = desc("q4mproxy_queue_rows", "Live rows of the queue table (not consumed), owned ones included: its depth.", tableLabels...)
	descOwned     = desc("q4mproxy_queue_owned_rows", "Rows of the table handed out by queue_wait and not consumed or released yet.", tableLabels...)
	descWaiters   = desc("q4mproxy_queue_waiters", "Connections blocked in queue_wait on the table.", tableLabels...)
	descOldest    = desc("q4mproxy_queue_oldest_row_age_seconds", "Age of the oldest row waiting to be handed out (0 when none waits), from its INSERT or, for rows stored before, from the server's start.", tableLabels...)
	descBytes     = desc("q4mproxy_queue_bytes", "Payload bytes of the table's live rows.", tableLabels...)
	descInserted  = desc("q4mproxy_queue_rows_inserted_total", "Rows inserted into the table since it was loaded (start, CREATE or TRUNCATE).", tableLabels...)
	descConsumed  = desc("q4mproxy_queue_rows_consumed_total", "Rows of the table consumed (queue_end, the next queue_wait, DELETE) since it was loaded.", tableLabels...)
	descAborted   = desc("q4mproxy_queue_rows_aborted_total", "Owned rows given back to the table by queue_abort() since the start.", tableLabels...)
	descRestored  = desc("q4mproxy_queue_rows_restored_total", "Owned rows given back to the table because their connection closed, since the start.", tableLabels...)
	descWaits     = desc("q4mproxy_queue_waits_total", "Finished queue_waits naming the table, by result: immediate (a row was there), delayed (one came), timeout.", "db", "table", "result")
	descCommits   = desc("q4mproxy_commits_total", "Group commits (batches) written to the store.")
	descSyncs     = desc("q4mproxy_commit_syncs_total", "Group commits synced to disk.")
	descOps       = desc("q4mproxy_commit_ops_total", "Operations carried by the group commits.")
	descDiskFull  = desc("q4mproxy_disk_full", "1 while writes are refused because the store's disk is full.")
	descRefused   = desc("q4mproxy_disk_full_writes_refused_total", "Writes refused because the disk was full.")
	descConns     = desc("q4mproxy_connections", "Client connections logged in now.")
	descConnsAll  = desc("q4mproxy_connections_total", "Connection attempts since the start (MySQL's Connections).")
	descStmts     = desc("q4mproxy_statements_total", "Statements run, by kind (MySQL's Com_* counters without the prefix).", "kind")
	descErrors    = desc("q4mproxy_errors_total", "Errors sent to clients, by MySQL error code.", "code")
	descValveMsgs = desc("q4mproxy_valve_messages_total", "Messages of a valve's destination by what the valve did: admitted (released on arrival), throttled (kept waiting), released (from the backlog later), dropped (after an emergency).", "valve", "destination", "action")
	descValveWait = desc("q4mproxy_valve_waiting", "Messages of the destination waiting in the valve's backlog.", "valve", "destination")
	descValveFill = desc("q4mproxy_valve_window", "Deliveries counted against the destination's limit now (in flight, or consumed within the interval).", "valve", "destination")
	descValveMax  = desc("q4mproxy_valve_window_limit", "The destination's limit: deliveries per interval.", "valve", "destination")

	descPebbleDisk     = desc("q4mproxy_pebble_disk_usage_bytes", "Disk space used by the Pebble store: WAL, sstables, obsolete and zombie files.")
	descPebbleWAL      = desc("q4mproxy_pebble_wal_bytes", "Live data in the WAL files (not yet flushed to sstables).")
	descPebbleWALIn    = desc("q4mproxy_pebble_wal_written_bytes_total", "Bytes written to the WAL.")
	descPebbleReadAmp  = desc("q4mproxy_pebble_read_amplification", "Read amplification: L0 sublevels plus non-empty levels below L0.")
	descPebbleTables   = desc("q4mproxy_pebble_sstables", "Live sstables.")
	descPebbleCompact  = desc("q4mproxy_pebble_compactions_total", "Compactions since the store was opened.")
	descPebbleDebt     = desc("q4mproxy_pebble_compaction_debt_bytes", "Estimated bytes to compact for the LSM to reach a stable state.")
	descPebbleFlushes  = desc("q4mproxy_pebble_flushes_total", "Memtable flushes since the store was opened.")
	descPebbleMemtable = desc("q4mproxy_pebble_memtable_bytes", "Bytes allocated by memtables.")
	descPebbleTombs    = desc("q4mproxy_pebble_tombstones", "Approximate count of deletion tombstones in the store (consumed rows not compacted away yet).")
	descPebbleCache    = desc("q4mproxy_pebble_block_cache_bytes", "Bytes in the block cache.")
	descPebbleHits     = desc("q4mproxy_pebble_block_cache_hits_total", "Block cache hits.")
	descPebbleMisses   = desc("q4mproxy_pebble_block_cache_misses_total", "Block cache misses.")
	descPebbleFsync    = desc("q4mproxy_pebble_wal_fsync_duration_seconds", "Pebble's own measure of its WAL fsyncs.")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// collector reads the components' state at scrape time.
type collector struct{ s *Server }

// Describe sends nothing: the collector is unchecked, its series come and
// go with the tables, connections' statements and valves' destinations.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// Collect reads a snapshot of every source.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	src := c.s.src.Load()
	if src == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if db := src.Store; db != nil {
		for _, t := range db.Snapshot() {
			l := []string{t.Database, t.Table}
			gauge(descRows, float64(t.Rows), l...)
			gauge(descOwned, float64(t.Owned), l...)
			gauge(descWaiters, float64(t.Waiters), l...)
			gauge(descOldest, t.OldestAge.Seconds(), l...)
			if !t.Shared { // a shared store does not know its live bytes
				gauge(descBytes, float64(t.BytesTotal-min(t.BytesRemoved, t.BytesTotal)), l...)
			}
			counter(descInserted, float64(t.RowsWritten), l...)
			counter(descConsumed, float64(t.RowsRemoved), l...)
			counter(descAborted, float64(t.RestoredByAbort), l...)
			counter(descRestored, float64(t.RestoredByClose), l...)
			counter(descWaits, float64(t.WaitImmediate), t.Database, t.Table, "immediate")
			counter(descWaits, float64(t.WaitDelayed), t.Database, t.Table, "delayed")
			counter(descWaits, float64(t.WaitTimeout), t.Database, t.Table, "timeout")
		}
		st := db.Stats()
		counter(descCommits, float64(st.Commits))
		counter(descSyncs, float64(st.Syncs))
		counter(descOps, float64(st.Ops))
		gauge(descDiskFull, b2f(st.DiskFull))
		counter(descRefused, float64(st.WritesRefused))
		if p, ok := db.(pebbleStore); ok {
			if m := p.Metrics(); m != nil {
				collectPebble(ch, m)
			}
		}
	}
	if srv := src.Server; srv != nil {
		c.collectServer(ch, srv)
	}
	for _, v := range src.Valves {
		for _, d := range v.Status() {
			for _, a := range []struct {
				action string
				n      uint64
			}{{"admitted", d.Admitted}, {"throttled", d.Throttled}, {"released", d.Released}, {"dropped", d.Dropped}} {
				counter(descValveMsgs, float64(a.n), d.Valve, d.Destination, a.action)
			}
			gauge(descValveWait, float64(d.Scheduled), d.Valve, d.Destination)
			gauge(descValveFill, float64(d.InWindow), d.Valve, d.Destination)
			gauge(descValveMax, float64(d.MaxItems), d.Valve, d.Destination)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collectPebble exports a handful of Pebble's metrics.
func collectPebble(ch chan<- prometheus.Metric, m *pebble.Metrics) {
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(descPebbleDisk, float64(diskUsage(m)))
	gauge(descPebbleWAL, float64(m.WAL.Size))
	counter(descPebbleWALIn, float64(m.WAL.BytesWritten))
	gauge(descPebbleReadAmp, float64(m.ReadAmp()))
	gauge(descPebbleTables, float64(m.Total().TablesCount))
	counter(descPebbleCompact, float64(m.Compact.Count))
	gauge(descPebbleDebt, float64(m.Compact.EstimatedDebt))
	counter(descPebbleFlushes, float64(m.Flush.Count))
	gauge(descPebbleMemtable, float64(m.MemTable.Size))
	gauge(descPebbleTombs, float64(m.Keys.TombstoneCount))
	gauge(descPebbleCache, float64(m.BlockCache.Size))
	counter(descPebbleHits, float64(m.BlockCache.Hits))
	counter(descPebbleMisses, float64(m.BlockCache.Misses))
	if h := m.LogWriter.FsyncLatency; h != nil {
		if hm := fsyncSeconds(h); hm != nil {
			ch <- hm
		}
	}
}

// diskUsage is Pebble's DiskSpaceUsage with the WAL counted at the larger
// of its physical size and its live data: Pebble's physical size of the
// WAL being written is the one it had when it was opened (0 for a new one).
func diskUsage(m *pebble.Metrics) uint64 {
	u := m.DiskSpaceUsage()
	if m.WAL.Size > m.WAL.PhysicalSize {
		u += m.WAL.Size - m.WAL.PhysicalSize
	}
	return u
}

// fsyncBounds are the bucket bounds (seconds) exported of Pebble's WAL
// fsync histogram; each becomes the largest of Pebble's own bounds not
// above it, so the cumulative counts stay exact.
var fsyncBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// fsyncSeconds turns Pebble's WAL fsync histogram (nanoseconds, about a
// hundred buckets) into one in seconds with fewer buckets.
func fsyncSeconds(h prometheus.Histogram) prometheus.Metric {
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.Histogram == nil {
		return nil
	}
	hist := m.Histogram
	type bucket struct {
		le    float64
		count uint64
	}
	var in []bucket
	for _, b := range hist.Bucket {
		in = append(in, bucket{b.GetUpperBound() / 1e9, b.GetCumulativeCount()})
	}
	sort.Slice(in, func(i, j int) bool { return in[i].le < in[j].le })
	out := map[float64]uint64{}
	for _, want := range fsyncBounds {
		// The largest bound of Pebble's not above want (with some slack
		// for float rounding).
		i := sort.Search(len(in), func(i int) bool { return in[i].le > want*1.0001 }) - 1
		if i >= 0 && in[i].le > 0 {
			out[in[i].le] = in[i].count
		}
	}
	return prometheus.MustNewConstHistogram(descPebbleFsync, hist.GetSampleCount(), hist.GetSampleSum()/1e9, out)
}

// codeLabel is an error code as a label value.
func codeLabel(code uint16) string { return strconv.Itoa(int(code)) }
