// Package ops serves q4mproxy's operations endpoints on an HTTP listener
// (--http-listen): Prometheus metrics (/metrics), liveness and readiness
// probes (/healthz, /readyz), and a live status page (/) with the JSON it
// polls (/api/status).
//
// The metrics are read at scrape time from the components' own state (the
// queue engine's Snapshot and Stats, Pebble's Metrics, the server's
// processlist and counters, the valves' Status) by one custom collector, so
// nothing is counted twice; only what has no state to read (the latency and
// batch-size histograms) is fed as it happens, through queue.Observer.
//
// The status page keeps no state of its own on the server beyond a short
// history: a sampler records every table's depth, rates and oldest row age
// once a second for the last minutes, so that a page opened now draws its
// charts at once. The page (status.html, embedded) uses no external
// resource and works offline.
//
// A Server starts before the store is opened (its probes answer 503
// "starting" meanwhile) and is told by Attach what to read once the store
// and the MySQL listener are up; SetStopping turns readiness off when
// shutdown begins.
package ops
