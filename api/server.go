package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gobwas/ws"
	"go.uber.org/zap"

	"github.com/klagg/klagg/shard"
)

// Server serves klines the way Binance does (REST and WebSocket) plus the
// operator's endpoints and the chart page. Publish feeds it; Start serves.
//
// Lock order: conn.mu before Server.regMu; stream.mu, connsMu and
// attemptsMu are leaves.
type Server struct {
	cfg          Config
	spot         bool
	log          *zap.Logger
	m            serverMetrics
	hub          *hub
	intervalIdx  map[string]int
	intervalList string
	started      atomic.Bool
	handler      http.Handler

	regMu    sync.Mutex
	byName   map[string]*stream
	subCount atomic.Int64

	connsMu  sync.Mutex
	conns    map[*conn]struct{}
	reserved int // slots taken by handshakes in progress

	attemptsMu sync.Mutex
	attempts   map[string][]time.Time // per remote IP, connection attempts in ConnWindow

	ln, adminLn net.Listener
	http, admin *http.Server
	wg          sync.WaitGroup
	closed      chan struct{}
	closeOnce   sync.Once
}

// New validates cfg and builds a server; it starts the hub goroutine, so
// Publish may be called at once. Start serves HTTP; Close stops everything.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		spot:        cfg.Market == "spot",
		log:         cfg.Log,
		intervalIdx: map[string]int{},
		byName:      map[string]*stream{},
		conns:       map[*conn]struct{}{},
		attempts:    map[string][]time.Time{},
		closed:      make(chan struct{}),
	}
	names := make([]string, len(cfg.Intervals))
	for i, iv := range cfg.Intervals {
		if _, dup := s.intervalIdx[iv.Name]; dup {
			return nil, fmt.Errorf("cannot configure api: interval %s twice: %w", iv.Name, ErrConfig)
		}
		s.intervalIdx[iv.Name] = i
		names[i] = iv.Name
	}
	s.intervalList = strings.Join(names, ",")
	s.hub = newHub(s)
	s.m = newServerMetrics(cfg.Metrics, s)
	s.handler = s.routes()
	go s.hub.run()
	return s, nil
}

// Publish hands one kline event to the server: a closed kline (k.Closed), a
// corrected one (shard.FlagCorrected), a flag-only mark of a closed one
// (k.Mark: its flags are added to the kline if the server still keeps it, and
// the kline is sent again as a correction) or a running update of an open one.
// k.Symbol indexes Config.Symbols and k.Interval Config.Intervals. It copies
// k into a bounded queue and never blocks: when the queue is full an update
// is dropped (the next one or the close supersedes it) and a closed kline
// waits in a spill list; one lost even there is counted and logged. Call it
// from one goroutine at a time (the pipeline's sink goroutine).
func (s *Server) Publish(k *shard.Kline) { s.hub.publish(k) }

// Metrics returns the set /metrics writes, for the daemon's own metrics.
func (s *Server) Metrics() *metrics.Set { return s.cfg.Metrics }

// Handler returns the server's HTTP handler (REST, WebSocket, operations,
// chart), for tests or for mounting it elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on Config.Listen (and AdminListen) and serves until Close.
// It returns once the listeners accept connections.
func (s *Server) Start() error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("cannot start api server: already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.http = s.newHTTPServer(s.handler, 65*time.Second)
	if s.cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", s.cfg.AdminListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("cannot listen on admin address %s: %w", s.cfg.AdminListen, err)
		}
		s.adminLn = aln
		s.admin = s.newHTTPServer(s.adminRoutes(), 5*time.Minute)
		s.serve(s.admin, aln)
	}
	s.serve(s.http, ln)
	s.log.Info("api serving", zap.String("addr", ln.Addr().String()), zap.String("market", s.cfg.Market),
		zap.Bool("token", s.cfg.Token != ""), zap.String("admin", s.cfg.AdminListen))
	return nil
}

// newHTTPServer bounds headers, reads and writes; writeTimeout must exceed
// the longest profile pprof is asked for (30 s by default).
func (s *Server) newHTTPServer(h http.Handler, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(s.log),
	}
}

func (s *Server) serve(hs *http.Server, ln net.Listener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server stopped", zap.Error(err))
		}
	}()
}

// Addr is the address the server listens on ("127.0.0.1:8080"), once started.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AdminAddr is the admin listener's address, "" without one.
func (s *Server) AdminAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// Close stops serving: listeners, WebSocket connections and the hub. It
// returns once every goroutine of the server has ended.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		if s.http != nil {
			err = s.http.Close()
		}
		if s.admin != nil {
			err = errors.Join(err, s.admin.Close())
		}
		s.connsMu.Lock()
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.connsMu.Unlock()
		for _, c := range conns {
			c.kill(ws.StatusGoingAway, "server shutdown")
			_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second)) // a stuck write ends too
		}
		s.wg.Wait()
		s.hub.stop.Store(true)
		s.hub.waiter.Wake()
		<-s.hub.done
	})
	return err
}

// Shutdown is Close after in-flight REST requests finish or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	if s.http != nil {
		err = s.http.Shutdown(ctx)
	}
	return errors.Join(err, s.Close())
}

// Stats is a snapshot of the server's main counters.
type Stats struct {
	Published, Processed int64 // kline events handed to Publish (accepted) and handled by the hub
	Connections          int
	Subscriptions        int64
	FramesSent           uint64
	ClosedLost           uint64
	UpdatesDropped       uint64
	SlowDisconnects      uint64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Published:       int64(s.hub.in.Stats().Published) + int64(s.m.closedSpilled.Get()),
		Processed:       int64(s.m.processed.Get()),
		Connections:     s.connCount(),
		Subscriptions:   s.subCount.Load(),
		FramesSent:      s.m.wsFrames.Get(),
		ClosedLost:      s.m.closedLost.Get(),
		UpdatesDropped:  s.m.updatesDropped.Get(),
		SlowDisconnects: s.m.wsSlow.Get(),
	}
}

func (s *Server) intervalIndex(name string) (int, bool) {
	i, ok := s.intervalIdx[name]
	return i, ok
}

func (s *Server) served(name string) bool {
	_, ok := s.intervalIdx[name]
	return ok
}

// registry returns the stream of symbol (upper case) and interval index,
// creating it; pin marks it as the hub's (never deleted).
func (s *Server) registry(symbol string, iv int, pin bool) *stream {
	ivName := s.cfg.Intervals[iv].Name
	name := streamName(symbol, ivName)
	s.regMu.Lock()
	defer s.regMu.Unlock()
	st := s.byName[name]
	if st == nil {
		st = &stream{name: name, symbol: symbol, interval: ivName, ivIndex: iv}
		s.byName[name] = st
	}
	st.pinned = st.pinned || pin
	return st
}

// lookup returns the stream if it exists (REST reads its recent klines).
func (s *Server) lookup(symbol, interval string) *stream {
	name := streamName(symbol, interval)
	s.regMu.Lock()
	defer s.regMu.Unlock()
	return s.byName[name]
}

// subscribe adds sb to its stream's subscribers (copy on write).
func (s *Server) subscribe(sb *sub) {
	s.regMu.Lock()
	st := sb.st
	var next []*sub
	if old := st.subs.Load(); old != nil {
		next = append(make([]*sub, 0, len(*old)+1), *old...)
	}
	next = append(next, sb)
	st.subs.Store(&next)
	st.refs++
	s.regMu.Unlock()
	s.subCount.Add(1)
}

// unsubscribe removes sb; a stream with no subscriber that the hub does not
// hold is forgotten, so unknown names cannot pile up.
func (s *Server) unsubscribe(sb *sub) {
	s.regMu.Lock()
	st := sb.st
	if old := st.subs.Load(); old != nil {
		next := make([]*sub, 0, len(*old))
		for _, x := range *old {
			if x != sb {
				next = append(next, x)
			}
		}
		st.subs.Store(&next)
	}
	st.refs--
	if st.refs == 0 && !st.pinned {
		delete(s.byName, st.name)
	}
	s.regMu.Unlock()
	s.subCount.Add(-1)
}

func (s *Server) connCount() int {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	return len(s.conns)
}

// reserveConn takes a connection slot before the handshake, so that
// connections are admitted in the order they arrive; false: MaxConns are
// open (or the server is closing).
func (s *Server) reserveConn() bool {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	select {
	case <-s.closed:
		return false
	default:
	}
	if len(s.conns)+s.reserved >= s.cfg.MaxConns {
		return false
	}
	s.reserved++
	return true
}

// addConn turns a reservation into the registered connection c; with ok
// false it only gives the reservation back. It reports whether c was added
// (the server may have closed meanwhile).
func (s *Server) addConn(c *conn, ok bool) bool {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	s.reserved--
	if !ok {
		return false
	}
	select {
	case <-s.closed:
		return false
	default:
	}
	s.conns[c] = struct{}{}
	s.wg.Add(2) // under connsMu: Close sees either this connection or a refusal
	return true
}

func (s *Server) removeConn(c *conn) {
	s.connsMu.Lock()
	delete(s.conns, c)
	s.connsMu.Unlock()
}

// allowAttempt counts a connection attempt from ip and reports whether it is
// within Config.ConnAttempts per ConnWindow.
func (s *Server) allowAttempt(ip string, now time.Time) bool {
	if s.cfg.ConnAttempts == 0 {
		return true
	}
	s.attemptsMu.Lock()
	defer s.attemptsMu.Unlock()
	cut := now.Add(-s.cfg.ConnWindow)
	ts := s.attempts[ip]
	i := 0
	for i < len(ts) && ts[i].Before(cut) {
		i++
	}
	ts = ts[i:]
	if len(ts) >= s.cfg.ConnAttempts {
		s.attempts[ip] = ts
		return false
	}
	s.attempts[ip] = append(ts, now)
	if len(s.attempts) > 100_000 { // bound the map: forget idle addresses
		for k, v := range s.attempts {
			if len(v) == 0 || v[len(v)-1].Before(cut) {
				delete(s.attempts, k)
			}
		}
	}
	return true
}

// authorized checks the token (when one is set) and returns the path with a
// /t/<token> prefix removed.
func (s *Server) authorized(r *http.Request) (string, bool) {
	path := r.URL.Path
	if s.cfg.Token == "" {
		return path, true
	}
	if rest, ok := strings.CutPrefix(path, "/t/"); ok {
		tok, tail, _ := strings.Cut(rest, "/")
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Token)) == 1 {
			return "/" + tail, true
		}
		return path, false
	}
	tok := r.Header.Get("X-Klagg-Token")
	if tok == "" {
		tok, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	return path, tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Token)) == 1
}

// trusted reports whether r may see pprof on the main listener.
func (s *Server) trusted() bool {
	return s.cfg.Token != "" || isLoopback(s.cfg.Listen)
}

// routes is the main listener's handler.
func (s *Server) routes() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				s.log.Error("BUG: api handler panicked", zap.Any("panic", v), zap.String("path", truncate(r.URL.Path, 128)))
				writeError(w, &apiError{Status: http.StatusInternalServerError, Code: codeUnknown, Msg: "An unknown error occurred while processing the request."})
			}
		}()
		if r.URL.Path == "/healthz" {
			s.healthz(w, r)
			return
		}
		path, ok := s.authorized(r)
		if !ok {
			s.m.restClientErr.Inc()
			writeError(w, &apiError{Status: http.StatusUnauthorized, Code: -1002, Msg: "You are not authorized to execute this request."})
			return
		}
		s.route(w, r, path)
	})
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, path string) {
	switch {
	case path == "/metrics":
		s.serveMetrics(w, r)
		return
	case path == "/readyz":
		s.readyz(w, r)
		return
	case path == "/healthz":
		s.healthz(w, r)
		return
	case strings.HasPrefix(path, "/debug/pprof/") || path == "/debug/pprof":
		if !s.trusted() {
			http.NotFound(w, r)
			return
		}
		s.pprof(w, r, path)
		return
	}
	if combined, streams, ok := wsRoute(path, r.URL.RawQuery); ok {
		s.serveWS(w, r, combined, streams)
		return
	}
	if rest, ok := s.restRoute(path); ok {
		s.serveREST(w, r, rest)
		return
	}
	if s.serveChart(w, r, path) {
		return
	}
	writeError(w, &apiError{Status: http.StatusNotFound, Code: codeUnknown, Msg: "Unknown endpoint."})
}

func (s *Server) adminRoutes() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, ok := s.authorized(r)
		if !ok && !isLoopback(s.cfg.AdminListen) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch {
		case path == "/metrics":
			s.serveMetrics(w, r)
		case strings.HasPrefix(path, "/debug/pprof"):
			s.pprof(w, r, path)
		default:
			http.NotFound(w, r)
		}
	})
}

func (s *Server) pprof(w http.ResponseWriter, r *http.Request, path string) {
	name := strings.TrimPrefix(strings.TrimPrefix(path, "/debug/pprof"), "/")
	switch name {
	case "":
		pprof.Index(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Handler(name).ServeHTTP(w, r)
	}
}

func (s *Server) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	s.cfg.Metrics.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	var b strings.Builder
	ready := true
	for _, c := range s.cfg.Ready {
		if err := c.Check(); err != nil {
			ready = false
			fmt.Fprintf(&b, "%s: not ready: %s\n", c.Name, truncate(err.Error(), 200))
		} else {
			fmt.Fprintf(&b, "%s: ok\n", c.Name)
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	} else if len(s.cfg.Ready) == 0 {
		b.WriteString("ok\n")
	}
	_, _ = w.Write([]byte(b.String()))
}

// wsRoute recognises Binance's WebSocket paths: /ws, /ws/<stream>/<stream>,
// /stream?streams=<stream>/<stream>, each also under the futures routes
// /market, /public (and /private, which carries no kline but is accepted).
// Stream names are validated later; names that are not kline streams of a
// served interval (ccxt's "/ws/0") subscribe nothing.
func wsRoute(path, rawQuery string) (combined bool, streams []string, ok bool) {
	for _, p := range [...]string{"/market", "/public", "/private"} {
		if rest, cut := strings.CutPrefix(path, p); cut && (rest == "" || rest[0] == '/') {
			path = rest
			break
		}
	}
	switch {
	case path == "/stream" || path == "/stream/":
		q := rawQuery
		for q != "" {
			var kv string
			kv, q, _ = strings.Cut(q, "&")
			if v, found := strings.CutPrefix(kv, "streams="); found {
				return true, splitStreams(v), true
			}
		}
		return true, nil, true
	case path == "/ws" || strings.HasPrefix(path, "/ws/"):
		return false, splitStreams(strings.TrimPrefix(path, "/ws")), true
	}
	return false, nil, false
}

func splitStreams(list string) []string {
	var out []string
	for n := range strings.SplitSeq(list, "/") {
		if n != "" && len(out) < 4096 {
			out = append(out, n)
		}
	}
	return out
}

// serveWS upgrades the request and starts the connection's goroutines.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, combined bool, names []string) {
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !s.allowAttempt(ip, time.Now()) {
		s.m.wsRejected.Inc()
		writeError(w, &apiError{Status: http.StatusTooManyRequests, Code: -1003, Msg: "Too many connection attempts from IP; current limit is " + fmt.Sprint(s.cfg.ConnAttempts) + " per " + s.cfg.ConnWindow.String() + "."})
		return
	}
	var kline []string
	for _, n := range names {
		if sym, iv, ok := parseStreamName(n); ok && s.served(iv) {
			kline = append(kline, streamName(sym, iv))
		}
	}
	if len(kline) > s.cfg.MaxStreams {
		s.m.wsRejected.Inc()
		writeError(w, badRequest(codeTooManyParams, "Too many streams; current limit is "+fmt.Sprint(s.cfg.MaxStreams)+" per connection."))
		return
	}
	if !s.reserveConn() {
		s.m.wsRejected.Inc()
		writeError(w, &apiError{Status: http.StatusServiceUnavailable, Code: -1034, Msg: "Too many concurrent connections; current limit is '" + fmt.Sprint(s.cfg.MaxConns) + "'."})
		return
	}
	nc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		s.addConn(nil, false)
		s.m.wsUpgradeFailed.Inc()
		return
	}
	_ = nc.SetDeadline(time.Time{}) // the HTTP server's read and write deadlines end with the handshake
	c := newConn(s, nc, rw.Reader, combined)
	if !s.addConn(c, true) {
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(closeFrame(ws.StatusGoingAway, "server shutdown"))
		_ = nc.Close()
		return
	}
	s.m.wsAccepted.Inc()
	if len(kline) > 0 {
		c.subscribe(kline)
	}
	go func() {
		defer s.wg.Done()
		c.writeLoop()
	}()
	go func() {
		defer s.wg.Done()
		c.readLoop()
	}()
}
