package ops

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/server"
	"github.com/q4mproxy/q4mproxy/valve"
)

// Config configures a Server.
type Config struct {
	// Version is shown on the status page.
	Version string
	// Upstream is the --upstream address ("" for none); /readyz says
	// whether it accepts connections.
	Upstream string
	// History is how long the status page's charts reach back; zero means
	// five minutes. One sample a second is kept for it.
	History time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Sources are what a Server reads once the process is up.
type Sources struct {
	Store  Store          // nil: no queue figures
	Server *server.Server // nil: no connections to show
	Valves []*valve.Valve
}

// Store is what the metrics, the status page and /readyz read of a queue
// store; every queue.Store has it (the embedded *queue.DB, the upstream
// *sqlstore.Store). A store that also has a Ping method (Pinger) is ready
// only while Ping succeeds; one that has Pebble's Metrics
// (*queue.DB) has them exported too.
type Store interface {
	Snapshot() []queue.TableState
	Stats() queue.Stats
}

// Pinger is a store that depends on a database: Ping checks that the
// database answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// pebbleStore is a store on Pebble (*queue.DB): Metrics returns nil once
// it is closed.
type pebbleStore interface {
	Metrics() *pebble.Metrics
}

// Server is the operations HTTP server. Its methods are safe for
// concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	hist    *history
	httpSrv *http.Server
	started time.Time

	src      atomic.Pointer[Sources] // nil until Attach
	stopping atomic.Bool

	waitHist   *prometheus.HistogramVec
	batchHist  prometheus.Histogram
	commitHist prometheus.Histogram

	stopSampler context.CancelFunc
	samplerDone chan struct{}
	closeOnce   sync.Once
}

//go:embed status.html
var page embed.FS

// New returns a Server that answers "starting" until Attach.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.History <= 0 {
		cfg.History = 5 * time.Minute
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "http"),
		reg:     prometheus.NewRegistry(),
		started: time.Now(),
		waitHist: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "q4mproxy_queue_wait_duration_seconds",
			Help:    "Time queue_wait took (consuming the row owned before included), by result: row (got one) or timeout.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5 ms .. 131 s
		}, []string{"result"}),
		batchHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "q4mproxy_commit_batch_ops",
			Help:    "Operations (inserts, consumes, DDL) written by one group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024
		}),
		commitHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "q4mproxy_commit_sync_duration_seconds",
			Help:    "Time one group commit took to write its batch and fsync it (writes with --sync off not counted).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15), // 0.1 ms .. 1.6 s
		}),
	}
	s.hist = newHistory(cfg.History)
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.waitHist, s.batchHist, s.commitHist,
		&collector{s: s},
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /api/status", s.apiStatus)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, page, "status.html")
	})
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// Observer returns the hooks that feed the histograms; pass it to
// queue.Open.
func (s *Server) Observer() *queue.Observer {
	return &queue.Observer{
		Commit: func(ops int, synced bool, d time.Duration) {
			s.batchHist.Observe(float64(ops))
			if synced {
				s.commitHist.Observe(d.Seconds())
			}
		},
		Wait: func(d time.Duration, got bool) {
			result := "timeout"
			if got {
				result = "row"
			}
			s.waitHist.WithLabelValues(result).Observe(d.Seconds())
		},
	}
}

// Registry returns the registry /metrics serves.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler returns the HTTP handler of every endpoint.
func (s *Server) Handler() http.Handler { return s.httpSrv.Handler }

// Attach tells s what to read, once the store is open and the MySQL
// listener serves: from then on /readyz answers 200 and the sampler of the
// status page's history runs. Call it once, from the goroutine that later
// calls Shutdown.
func (s *Server) Attach(src Sources) {
	s.src.Store(&src)
	ctx, cancel := context.WithCancel(context.Background())
	s.stopSampler, s.samplerDone = cancel, make(chan struct{})
	go func() {
		defer close(s.samplerDone)
		s.hist.run(ctx, src.Store)
	}()
}

// SetStopping turns readiness off: shutdown has begun.
func (s *Server) SetStopping() { s.stopping.Store(true) }

// Serve serves HTTP on l until Shutdown; it returns nil then.
func (s *Server) Serve(l net.Listener) error {
	err := s.httpSrv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the sampler and closes the HTTP server, waiting for
// requests in flight until ctx ends. Call it after the store is closed, or
// before: either way no request reads a closed store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	s.closeOnce.Do(func() {
		if s.stopSampler != nil {
			s.stopSampler()
			<-s.samplerDone
		}
	})
	return s.httpSrv.Shutdown(ctx)
}

// readiness says whether the process serves, and why not.
func (s *Server) readiness() (ready bool, state string) {
	switch {
	case s.stopping.Load():
		return false, "shutting down"
	case s.src.Load() == nil:
		return false, "starting"
	}
	return true, "ready"
}

// pingTimeout bounds /readyz's check of a store's database.
const pingTimeout = 2 * time.Second

// readyz answers 200 when the store is open and the MySQL listener
// serves, 503 while starting or shutting down, and, with a store in a
// database (the upstream store), while that database does not answer a
// ping within pingTimeout. With an upstream, the body says whether it
// accepts connections (it does not change the status: the queues are
// served without it, unless they are in it).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ready, state := s.readiness()
	storeState := "open"
	if ready {
		if p, ok := s.src.Load().Store.(Pinger); ok {
			ctx, cancel := context.WithTimeout(r.Context(), pingTimeout)
			err := p.Ping(ctx)
			cancel()
			if err != nil {
				ready, state = false, "store unreachable"
				storeState = "unreachable (" + err.Error() + ")"
			} else {
				storeState = "open, its database answers"
			}
		}
	}
	var b strings.Builder
	fmt.Fprintln(&b, state)
	if ready || storeState != "open" {
		fmt.Fprintln(&b, "store: "+storeState)
		fmt.Fprintln(&b, "mysql listener: serving")
	}
	if s.cfg.Upstream != "" {
		fmt.Fprintf(&b, "upstream %s: %s\n", s.cfg.Upstream, s.upstreamState(r.Context()))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(b.String()))
}

// upstreamState dials the upstream (a TCP connection, no login).
func (s *Server) upstreamState(ctx context.Context) string {
	network := "tcp"
	if strings.Contains(s.cfg.Upstream, "/") {
		network = "unix"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, s.cfg.Upstream)
	if err != nil {
		return "unreachable (" + err.Error() + ")"
	}
	_ = c.Close()
	return "reachable"
}
