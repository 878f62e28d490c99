package ops

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// status is what /api/status answers, and what the status page draws.
type status struct {
	Version  string        `json:"version"`
	Host     string        `json:"host"`
	State    string        `json:"state"` // ready, starting, shutting down
	Now      int64         `json:"now"`   // Unix milliseconds
	Uptime   float64       `json:"uptime_seconds"`
	History  float64       `json:"history_seconds"` // how far the charts reach back
	Upstream string        `json:"upstream,omitempty"`
	Store    *storeStatus  `json:"store,omitempty"`
	Tables   []tableStatus `json:"tables"`
	Conns    []connStatus  `json:"connections"`
	Valves   []valveStatus `json:"valves"`
}

type storeStatus struct {
	Commits   uint64 `json:"commits"`
	Ops       uint64 `json:"ops"`
	DiskFull  bool   `json:"disk_full"`
	DiskBytes uint64 `json:"disk_bytes"`
	WALBytes  uint64 `json:"wal_bytes"`
}

type tableStatus struct {
	DB       string  `json:"db"`
	Table    string  `json:"table"`
	Rows     int     `json:"rows"`
	Owned    int     `json:"owned"`
	Waiters  int     `json:"waiters"`
	Age      float64 `json:"oldest_age_seconds"`
	In       float64 `json:"in_per_second"`  // over the last samples
	Out      float64 `json:"out_per_second"` // over the last samples
	Inserted uint64  `json:"inserted"`
	Consumed uint64  `json:"consumed"`
	Reserved bool    `json:"reserved"` // served to a valve only
	Points   []point `json:"points"`   // newer than ?since
}

type connStatus struct {
	ID      int64  `json:"id"`
	User    string `json:"user"`
	Host    string `json:"host"`
	DB      string `json:"db"`
	Command string `json:"command"`
	Time    int64  `json:"time"`
	State   string `json:"state"`
	Info    string `json:"info"`
}

type valveStatus struct {
	Valve       string `json:"valve"`
	Destination string `json:"destination"`
	Admitted    uint64 `json:"admitted"`
	Throttled   uint64 `json:"throttled"`
	Released    uint64 `json:"released"`
	Dropped     uint64 `json:"dropped"`
	Waiting     int    `json:"waiting"`
	Window      int    `json:"window"`
	Limit       int    `json:"limit"`
	NextRelease int64  `json:"next_release,omitempty"` // Unix milliseconds
	DropUntil   int64  `json:"drop_until,omitempty"`
}

// maxInfo bounds the statement text shown per connection (a multi-row
// INSERT can be megabytes, sent every second otherwise).
const maxInfo = 1024

// rateWindow is how many samples the rates shown average.
const rateWindow = 5

// apiStatus answers the status page's poll; ?since=MS sends only the
// chart points after that Unix millisecond.
func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	_, state := s.readiness()
	host, _ := os.Hostname()
	now := time.Now()
	st := status{
		Version: s.cfg.Version, Host: host, State: state, Now: now.UnixMilli(),
		Uptime: now.Sub(s.started).Seconds(), History: float64(s.hist.keep),
		Upstream: s.cfg.Upstream,
		Tables:   []tableStatus{}, Conns: []connStatus{}, Valves: []valveStatus{},
	}
	if src := s.src.Load(); src != nil && !s.stopping.Load() {
		if db := src.Store; db != nil {
			dbst := db.Stats()
			st.Store = &storeStatus{Commits: dbst.Commits, Ops: dbst.Ops, DiskFull: dbst.DiskFull}
			if p, ok := db.(pebbleStore); ok {
				if m := p.Metrics(); m != nil {
					st.Store.DiskBytes, st.Store.WALBytes = diskUsage(m), m.WAL.Size
				}
			}
			for _, t := range db.Snapshot() {
				ts := tableStatus{
					DB: t.Database, Table: t.Table, Rows: t.Rows, Owned: t.Owned, Waiters: t.Waiters,
					Age: t.OldestAge.Seconds(), Inserted: t.RowsWritten, Consumed: t.RowsRemoved,
					Reserved: t.Reserved,
				}
				all := s.hist.since(t.Database+"."+t.Table, 0)
				recent := all[max(len(all)-rateWindow, 0):]
				for _, p := range recent {
					ts.In += p.In / float64(len(recent))
					ts.Out += p.Out / float64(len(recent))
				}
				ts.Points = []point{}
				for _, p := range all {
					if p.At > since {
						ts.Points = append(ts.Points, p)
					}
				}
				st.Tables = append(st.Tables, ts)
			}
		}
		if srv := src.Server; srv != nil {
			for _, row := range srv.ProcessList(true) {
				c := connRow(row)
				if len(c.Info) > maxInfo {
					c.Info = strings.ToValidUTF8(c.Info[:maxInfo], "") + "…"
				}
				st.Conns = append(st.Conns, c)
			}
		}
		for _, v := range src.Valves {
			for _, d := range v.Status() {
				vs := valveStatus{
					Valve: d.Valve, Destination: d.Destination, Admitted: d.Admitted, Throttled: d.Throttled,
					Released: d.Released, Dropped: d.Dropped, Waiting: d.Scheduled, Window: d.InWindow, Limit: d.MaxItems,
				}
				if !d.NextRelease.IsZero() {
					vs.NextRelease = d.NextRelease.UnixMilli()
				}
				if !d.DropUntil.IsZero() {
					vs.DropUntil = d.DropUntil.UnixMilli()
				}
				st.Valves = append(st.Valves, vs)
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(st)
}

// connRow converts a processlist row (Id, User, Host, db, Command, Time,
// State, Info) as server.ProcessList gives it.
func connRow(row []any) connStatus {
	str := func(v any) string {
		s, _ := v.(string)
		return s
	}
	num := func(v any) int64 {
		n, _ := v.(int64)
		return n
	}
	var c connStatus
	if len(row) >= 8 {
		c = connStatus{ID: num(row[0]), User: str(row[1]), Host: str(row[2]), DB: str(row[3]),
			Command: str(row[4]), Time: num(row[5]), State: str(row[6]), Info: str(row[7])}
	}
	return c
}
