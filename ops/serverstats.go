package ops

import (
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/q4mproxy/q4mproxy/server"
)

var (
	descRunning      = desc("q4mproxy_connections_running", "Connections running a statement now (MySQL's Threads_running).")
	descMaxUsed      = desc("q4mproxy_connections_max_used", "Most connections open at once since the start (MySQL's Max_used_connections).")
	descAbortedConns = desc("q4mproxy_connections_aborted_total", "Connections that failed: in the handshake (connect: a failed or abandoned login) or later without a proper close (client).", "phase")
	descBytesIn      = desc("q4mproxy_received_bytes_total", "Bytes received from clients.")
	descBytesOut     = desc("q4mproxy_sent_bytes_total", "Bytes sent to clients.")
	descQuestion     = desc("q4mproxy_questions_total", "Statements sent by clients (MySQL's Questions).")
)

// collectServer exports the server's status variables (SHOW GLOBAL
// STATUS) and its errors by code.
func (c *collector) collectServer(ch chan<- prometheus.Metric, srv *server.Server) {
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, v := range srv.StatusVars() {
		switch {
		case strings.HasPrefix(v.Name, "Com_"):
			counter(descStmts, v.Value, strings.ToLower(strings.TrimPrefix(v.Name, "Com_")))
		case v.Name == "Threads_connected":
			gauge(descConns, v.Value)
		case v.Name == "Threads_running":
			gauge(descRunning, v.Value)
		case v.Name == "Max_used_connections":
			gauge(descMaxUsed, v.Value)
		case v.Name == "Connections":
			counter(descConnsAll, v.Value)
		case v.Name == "Aborted_connects":
			counter(descAbortedConns, v.Value, "connect")
		case v.Name == "Aborted_clients":
			counter(descAbortedConns, v.Value, "client")
		case v.Name == "Bytes_received":
			counter(descBytesIn, v.Value)
		case v.Name == "Bytes_sent":
			counter(descBytesOut, v.Value)
		case v.Name == "Questions":
			counter(descQuestion, v.Value)
		}
	}
	errs := srv.ErrorCounts()
	codes := make([]uint16, 0, len(errs))
	for code := range errs {
		codes = append(codes, code)
	}
	sort.Slice(codes, func(i, j int) bool { return codes[i] < codes[j] })
	for _, code := range codes {
		counter(descErrors, int64(errs[code]), codeLabel(code))
	}
}
