package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// Limits of the HTTP listener: it faces load balancers and scrapers, maybe
// hostile ones, and must keep answering with bounded memory.
const (
	MaxHeaderBytes    = 8 << 10 // larger request headers get 431
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 15 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxConnections    = 256 // further connections wait in the kernel's backlog
	maxScrapes        = 4   // concurrent /metrics requests; more get 503
)

// Config configures a Server.
type Config struct {
	// Listen is the HTTP host:port (":8080").
	Listen string
	// AdminListen, if set, is a second HTTP listener's host:port that
	// serves /status, the status page and /metrics (and the probes), which
	// Listen then leaves out: it keeps /livez, /readyz and /healthz only.
	AdminListen string
	// TCPListen is the TCP health port's host:port (":51819"); "" or "off"
	// for none.
	TCPListen string
	State     *State        // required
	Metrics   MetricsSource // nil: only build info and readiness
	Status    StatusSource  // nil: /status shows readiness only
	// Version is reported by anyguard_build_info and /status; Revision
	// (the source's commit) by anyguard_build_info.
	Version  string
	Revision string
	// PerClientMetrics enables per-client series, for at most
	// PerClientLimit clients (default 1000).
	PerClientMetrics bool
	PerClientLimit   int
	Logger           *slog.Logger
}

// Server is the running HTTP listener and TCP health port.
type Server struct {
	cfg     Config
	log     *slog.Logger
	http    *http.Server
	ln      net.Listener
	admin   *http.Server // nil without AdminListen
	adminLn net.Listener
	handler http.Handler
	tcp     *tcpPort
	wg      sync.WaitGroup
	once    sync.Once
}

// ErrListen wraps failures to bind a listener; the message names the
// config field.
var ErrListen = errors.New("health listener")

// NewHandler returns the HTTP handler alone (for tests and embedding):
// every endpoint.
func NewHandler(cfg Config) http.Handler { return newHandler(cfg, true) }

// newHandler returns the handler of every endpoint, or (full false) of the
// load balancers' probes alone.
func newHandler(cfg Config, full bool) http.Handler {
	if cfg.PerClientLimit <= 0 {
		cfg.PerClientLimit = 1000
	}
	col := &collector{
		src: cfg.Metrics, state: cfg.State, version: cfg.Version, revision: cfg.Revision, goVersion: runtime.Version(),
		perClient: cfg.PerClientMetrics, limit: cfg.PerClientLimit,
	}
	h := &handlers{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", h.livez)
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.HandleFunc("GET /healthz", h.readyz)
	if !full {
		return limitRequests(mux)
	}
	mux.Handle("GET /metrics", http.TimeoutHandler(newMetricsHandler(col), 10*time.Second, "scrape timed out"))
	mux.HandleFunc("GET /status", h.status)
	mux.HandleFunc("GET /{$}", h.page)
	return limitRequests(mux)
}

// limitRequests refuses what no handler here needs: request bodies and
// long URLs. Unknown paths get 404 and other methods 405 from the mux.
func limitRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case len(r.URL.RawQuery) > 1024 || len(r.URL.Path) > 1024:
			http.Error(w, "URI too long", http.StatusRequestURITooLong)
			return
		case (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.ContentLength > 0 || len(r.TransferEncoding) > 0):
			w.Header().Set("Connection", "close")
			http.Error(w, "request bodies are not accepted", http.StatusRequestEntityTooLarge)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Listen binds the HTTP listener and the TCP health port and starts
// serving. Close stops both.
func Listen(cfg Config) (*Server, error) {
	if cfg.State == nil {
		return nil, errors.New("health: Config.State is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, handler: newHandler(cfg, cfg.AdminListen == "")}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: health.listen %s: %w", ErrListen, cfg.Listen, err)
	}
	s.ln = netutil.LimitListener(ln, MaxConnections)
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("%w: health.admin_listen %s: %w", ErrListen, cfg.AdminListen, err)
		}
		s.adminLn = netutil.LimitListener(aln, MaxConnections)
	}
	if cfg.TCPListen != "" && cfg.TCPListen != "off" {
		s.tcp, err = newTCPPort(cfg.TCPListen, cfg.State, cfg.Logger)
		if err != nil {
			ln.Close()
			if s.adminLn != nil {
				s.adminLn.Close()
			}
			return nil, fmt.Errorf("%w: health.tcp_listen %s: %w", ErrListen, cfg.TCPListen, err)
		}
	}
	s.http = s.serve(s.ln, s.handler, "health HTTP listener")
	if s.adminLn != nil {
		s.admin = s.serve(s.adminLn, NewHandler(cfg), "admin HTTP listener")
	}
	attrs := []any{"listen", s.ln.Addr().String()}
	if s.adminLn != nil {
		attrs = append(attrs, "admin_listen", s.adminLn.Addr().String())
	}
	if s.tcp != nil {
		attrs = append(attrs, "tcp_listen", s.tcp.Addr().String())
	}
	s.log.Info("health listener up", attrs...)
	return s, nil
}

// serve starts an HTTP server of h on ln, owned by s (Close stops it).
func (s *Server) serve(ln net.Listener, h http.Handler, what string) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error(what+" stopped", "err", err)
		}
	}()
	return srv
}

// AdminAddr is the admin listener's address, or nil without one.
func (s *Server) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// Addr is the HTTP listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// TCPAddr is the TCP health port's address (listening or not), or nil.
func (s *Server) TCPAddr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// Close stops the TCP health port and the HTTP listener, letting requests
// in progress finish for up to a second.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		if s.tcp != nil {
			s.tcp.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		for _, srv := range []*http.Server{s.http, s.admin} {
			if srv == nil {
				continue
			}
			if e := srv.Shutdown(ctx); e != nil {
				err = errors.Join(err, srv.Close())
			}
		}
		s.wg.Wait()
	})
	return err
}

type handlers struct{ cfg Config }

func noCache(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
}

func (h *handlers) livez(w http.ResponseWriter, _ *http.Request) {
	noCache(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 "ok" or 503 "not ready"; with ?verbose (any value)
// one line per check follows.
func (h *handlers) readyz(w http.ResponseWriter, r *http.Request) {
	noCache(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	st := h.cfg.State
	ready := st.Ready()
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	if _, verbose := r.URL.Query()["verbose"]; !verbose {
		if ready {
			fmt.Fprintln(w, "ok")
		} else {
			fmt.Fprintln(w, "not ready")
		}
		return
	}
	var b strings.Builder
	for _, c := range st.Results() {
		switch {
		case c.OK:
			fmt.Fprintf(&b, "[+] %s ok\n", c.Name)
		case c.Advisory:
			fmt.Fprintf(&b, "[!] %s warning: %s\n", c.Name, c.Error)
		default:
			fmt.Fprintf(&b, "[-] %s failed: %s\n", c.Name, c.Error)
		}
	}
	if st.Draining() {
		fmt.Fprintf(&b, "[-] draining: %v\n", ErrDraining)
	} else {
		b.WriteString("[+] draining no\n")
	}
	if ready {
		b.WriteString("readyz check passed\n")
	} else {
		b.WriteString("readyz check failed\n")
	}
	w.Write([]byte(b.String()))
}

// snapshot builds the Status document.
func (h *handlers) snapshot() Status {
	var s Status
	if h.cfg.Status != nil {
		s = h.cfg.Status.Status()
	}
	s.Schema = 1
	s.Checks = h.cfg.State.Results()
	s.Node.Ready = h.cfg.State.Ready()
	s.Node.Draining = h.cfg.State.Draining()
	if s.Node.Version == "" {
		s.Node.Version = h.cfg.Version
	}
	// Empty lists rather than null, so consumers need no special case.
	if s.Checks == nil {
		s.Checks = []CheckResult{}
	}
	if s.Members == nil {
		s.Members = []MemberStatus{}
	}
	if s.Regions == nil {
		s.Regions = []RegionStatus{}
	}
	if s.Clients == nil {
		s.Clients = []ClientStatus{}
	}
	if s.RefusedPrefixes == nil {
		s.RefusedPrefixes = []RefusedPrefixStatus{}
	}
	if s.Node.Prefixes == nil {
		s.Node.Prefixes = []string{}
	}
	for i := range s.Regions {
		if s.Regions[i].Prefixes == nil {
			s.Regions[i].Prefixes = []string{}
		}
	}
	for i := range s.Clients {
		if s.Clients[i].AllowedIPs == nil {
			s.Clients[i].AllowedIPs = []string{}
		}
	}
	return s
}

func (h *handlers) status(w http.ResponseWriter, _ *http.Request) {
	noCache(w)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(h.snapshot())
}
