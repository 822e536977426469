package fakex

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Server is a fake Binance exchange on loopback: WebSocket market streams and
// the REST endpoints klagg uses, fed by a synthetic Generator or a replay, with
// fault injection. Its methods are safe for concurrent use.
//
// Lock order: Server.mu (universe and history) before conn.mu; streams.mu and
// connsMu are leaves.
type Server struct {
	cfg      Config
	spot     bool
	msgLimit int
	ln       net.Listener
	http     *http.Server
	started  atomic.Bool

	streams streams

	connsMu sync.Mutex
	conns   atomic.Pointer[[]*conn]
	subConn chan struct{} // a connection got its first subscription (WaitConns)

	mu       sync.RWMutex
	syms     map[string]*symbol
	order    []*symbol // universe in listing order
	histCap  int
	gen      *Generator
	genSyms  []*symbol
	genPre   []int // length of the combined prefix of each generator symbol's frames
	listings []listing
	bogus    []SymbolAt // bogus faults not fired yet
	total    int64      // frames produced (list/delist counts)

	clock   atomic.Int64 // data time of the last trade, Unix ms
	clockAt atomic.Int64 // wall time (Unix ms) when clock was last set
	traded  atomic.Bool  // the synthetic feed produced its first trade
	closed  chan struct{}
	stop    chan struct{} // Stop: the synthetic producer ends
	fed     chan struct{} // closed when the producer has returned
	done    chan struct{}
	wg      sync.WaitGroup
	stats   counters
	weights weightWindow
	restSeq atomic.Int64
}

type listing struct {
	SymbolAt
	list bool
}

// streams numbers stream names; ids index the connections' subscription bitsets.
type streams struct {
	mu  sync.RWMutex
	ids map[string]uint32
}

func (r *streams) id(name string) uint32 {
	r.mu.RLock()
	id, ok := r.ids[name]
	r.mu.RUnlock()
	if ok {
		return id
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.ids[name]; ok {
		return id
	}
	id = uint32(len(r.ids))
	r.ids[name] = id
	return id
}

// New validates cfg and prepares the feed (a replay's files are scanned for
// their symbols); Start serves it.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		spot:     cfg.Market == "spot",
		msgLimit: 10,
		streams:  streams{ids: map[string]uint32{}},
		syms:     map[string]*symbol{},
		closed:   make(chan struct{}),
		stop:     make(chan struct{}),
		fed:      make(chan struct{}),
		done:     make(chan struct{}),
		subConn:  make(chan struct{}, 1),
	}
	if s.spot {
		s.msgLimit = 5
	}
	s.conns.Store(&[]*conn{})
	s.stats.init()
	var names []string
	var first int64
	if len(cfg.Replay) > 0 {
		if names, first, err = scanReplay(cfg.Replay); err != nil {
			return nil, err
		}
	} else {
		s.gen = NewGenerator(GenConfig{
			Market:   cfg.Market,
			Symbols:  cfg.Symbols,
			Seed:     cfg.Seed,
			Start:    time.Now().UnixMilli(),
			Rate:     cmpOr(cfg.Rate, 100_000),
			Combined: true,
		})
		names = s.gen.Symbols()
	}
	s.histCap = cfg.History
	if s.histCap == 0 {
		s.histCap = max(1000, 1_000_000/max(1, len(names)))
	}
	for _, n := range names {
		s.addSymbol(n)
	}
	if s.gen != nil {
		for i, sym := range s.order {
			pd, qd := s.gen.digits(i)
			sym.pd, sym.qd = uint8(pd), uint8(qd)
			s.genSyms = append(s.genSyms, sym)
			s.genPre = append(s.genPre, len(`{"stream":"`)+len(sym.name)+len(`@aggTrade","data":`))
		}
	}
	for _, l := range cfg.Faults.List {
		sym, ok := s.syms[l.Symbol]
		if !ok {
			return nil, fmt.Errorf("%w: list=%s: the feed has no such symbol", ErrConfig, l.Symbol)
		}
		sym.status = statusUnlisted
		s.listings = append(s.listings, listing{l, true})
	}
	for _, l := range cfg.Faults.Delist {
		if _, ok := s.syms[l.Symbol]; !ok {
			return nil, fmt.Errorf("%w: delist=%s: the feed has no such symbol", ErrConfig, l.Symbol)
		}
		s.listings = append(s.listings, listing{l, false})
	}
	slices.SortStableFunc(s.listings, func(a, b listing) int { return int(a.After - b.After) })
	for _, b := range cfg.Faults.Bogus {
		if _, ok := s.syms[b.Symbol]; !ok {
			return nil, fmt.Errorf("%w: bogus=%s: the feed has no such symbol", ErrConfig, b.Symbol)
		}
		s.bogus = append(s.bogus, b)
	}
	// The data's clock: before the first trade is sent, a replay's clock reads
	// just before it, never today's date (a client would close every kline
	// up to today at once); the synthetic feed starts now.
	s.setClock(time.Now().UnixMilli())
	if first > 0 {
		s.setClock(first - 1)
	}
	return s, nil
}

func cmpOr(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

// addSymbol registers a symbol of the feed; s.mu is held or not yet shared.
func (s *Server) addSymbol(name string) *symbol {
	if sym, ok := s.syms[name]; ok {
		return sym
	}
	sym := newSymbol(name, s.streams.id(strings.ToLower(name)+"@aggTrade"), s.histCap)
	s.syms[name] = sym
	s.order = append(s.order, sym)
	return sym
}

// Start listens on Config.Listen and starts the feed; it returns once the
// server accepts connections. It serves until Close.
func (s *Server) Start() error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.http = &http.Server{Handler: http.HandlerFunc(s.route), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		_ = s.http.Serve(ln)
	}()
	go func() {
		defer s.wg.Done()
		defer close(s.fed)
		if len(s.cfg.Replay) > 0 {
			s.replay()
		} else {
			s.synthesize()
		}
	}()
	return nil
}

// Addr is "127.0.0.1:PORT" once started.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// WSURL is "ws://127.0.0.1:PORT"; append "/market/stream?streams=..." etc.
func (s *Server) WSURL() string { return "ws://" + s.Addr() }

// RESTURL is "http://127.0.0.1:PORT"; append "/fapi/v1/..." or "/api/v3/...".
func (s *Server) RESTURL() string { return "http://" + s.Addr() }

// Stop ends the synthetic feed and returns once every frame it produced is
// written to the connections; connections and REST stay up (capacity tests count
// what the client received against Produced). Safe to call once, after Start.
func (s *Server) Stop() {
	close(s.stop)
	<-s.fed
	s.waitFlushed()
}

// Done is closed when a replay has sent everything and the connections'
// queues are written out; a synthetic feed never ends.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close stops the feed, closes every connection and the listener.
func (s *Server) Close() error {
	select {
	case <-s.closed:
		return nil
	default:
	}
	close(s.closed)
	var err error
	if s.http != nil {
		err = s.http.Close()
	}
	for _, c := range *s.conns.Load() {
		c.close()
	}
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Symbols is the current universe: listed symbols, delisted ones excluded.
func (s *Server) Symbols() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for _, sym := range s.order {
		if sym.status == statusTrading {
			out = append(out, sym.name)
		}
	}
	return out
}

// IDRange is what the server produced for one symbol: the truth a zero-loss
// check compares against. Every id in [First, Last] exists when
// Count == Last-First+1 (always for the synthetic feed).
type IDRange struct {
	First, Last int64 // first and last aggTrade id produced; First -1 if none
	Count       int64 // aggTrades produced, withheld ones included
	RawTrades   int64 // sum of l-f+1
	Withheld    []int64
}

// Produced returns, per symbol, the aggTrades the server has produced so far
// (sent on the WebSocket or withheld). Trades are produced before they are
// queued, so read it after Done (replay) or after the client caught up.
func (s *Server) Produced() map[string]IDRange {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]IDRange, len(s.syms))
	for name, sym := range s.syms {
		if sym.produced == 0 {
			continue
		}
		out[name] = IDRange{First: sym.firstID, Last: sym.lastID, Count: sym.produced,
			RawTrades: sym.rawTrades, Withheld: slices.Clone(sym.withheldIDs)}
	}
	return out
}

// Trades returns up to limit retained trades of symbol with id >= fromID, as
// REST aggTrades would.
func (s *Server) Trades(symbol string, fromID int64, limit int) []AggTrade {
	s.mu.RLock()
	sym, ok := s.syms[symbol]
	var hs []histTrade
	if ok {
		hs = sym.query(nil, fromID, -1, -1, limit)
	}
	s.mu.RUnlock()
	out := make([]AggTrade, len(hs))
	for i, t := range hs {
		out[i] = AggTrade{AggID: t.id, FirstID: t.first, LastID: t.first + int64(t.span), TradeTime: t.time,
			Price: string(appendFixed8(nil, t.price, t.pd)), Qty: string(appendFixed8(nil, t.qty, t.qd)), BuyerMaker: t.m}
	}
	return out
}

// Clock is the server's time, Unix milliseconds (what REST time returns): the
// data time of the last trade; a paced synthetic feed's clock follows the wall
// clock, so it goes on after its last trade (after Stop too), as an exchange's
// clock does when nobody trades. A replay's clock is its last trade's time.
func (s *Server) Clock() int64 {
	c := s.clock.Load()
	if len(s.cfg.Replay) > 0 || s.cfg.Rate <= 0 || !s.traded.Load() {
		return c
	}
	return c + max(time.Now().UnixMilli()-s.clockAt.Load(), 0)
}

// setClock sets the data time to t (a trade was produced at t).
func (s *Server) setClock(t int64) {
	s.clock.Store(t)
	s.clockAt.Store(time.Now().UnixMilli())
}

// setTradeClock sets the data time to a trade's time t; the synthetic feed's
// clock runs on from there.
func (s *Server) setTradeClock(t int64) {
	s.setClock(t)
	s.traded.Store(true)
}

func (s *Server) addConn(c *conn) {
	s.connsMu.Lock()
	old := *s.conns.Load()
	next := append(slices.Clone(old), c)
	s.conns.Store(&next)
	s.connsMu.Unlock()
}

func (s *Server) removeConn(c *conn) {
	s.connsMu.Lock()
	old := *s.conns.Load()
	if i := slices.Index(old, c); i >= 0 {
		next := slices.Delete(slices.Clone(old), i, i+1)
		s.conns.Store(&next)
	}
	s.connsMu.Unlock()
}

// route sends WebSocket paths to serveWS and the rest to REST.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	market := strings.HasPrefix(path, "/market/")
	if market {
		path = strings.TrimPrefix(path, "/market")
	}
	switch {
	case path == "/stream":
		s.serveWS(w, r, true, market, splitStreams(r.URL.Query().Get("streams")))
	case path == "/ws" || strings.HasPrefix(path, "/ws/"):
		s.serveWS(w, r, false, market, splitStreams(strings.TrimPrefix(strings.TrimPrefix(path, "/ws"), "/")))
	default:
		s.serveREST(w, r)
	}
}

func splitStreams(list string) []string {
	var out []string
	for n := range strings.SplitSeq(list, "/") {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, combined, market bool, names []string) {
	if s.spot && market {
		http.NotFound(w, r)
		return
	}
	if len(names) > s.cfg.MaxStreams {
		writeError(w, http.StatusBadRequest, -1102, "too many streams")
		return
	}
	nc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		s.stats.upgradeFailed.Add(1)
		return
	}
	if d := s.cfg.Faults.Late; d > 0 {
		// The client has its answer and may take its streams as live.
		s.fault("late")
		time.Sleep(d)
	}
	c := newConn(s, nc, rw.Reader)
	c.combined = combined
	c.noAgg = !s.spot && !market
	if len(names) > 0 {
		c.subscribeLocked(names)
	}
	s.stats.connsOpened.Add(1)
	s.addConn(c)
	if len(names) > 0 {
		signal(s.subConn)
	}
	select {
	case <-s.closed:
		c.close()
	default:
	}
	go c.writeLoop()
	go c.readLoop()
}

// counters are the Server's statistics.
type counters struct {
	connsOpened, connsClosed, connsSlow, connsTooFast, pongTimeouts, upgradeFailed atomic.Int64
	framesSent, bytesSent, subscriptions, requests, replaySkipped                  atomic.Int64

	mu     sync.Mutex
	rest   map[RESTKey]int64
	faults map[string]int64
}

func (c *counters) init() {
	c.rest = map[RESTKey]int64{}
	c.faults = map[string]int64{}
}

// RESTKey names a REST outcome: the endpoint ("aggTrades", "time", ...) and
// the HTTP status.
type RESTKey struct {
	Endpoint string
	Status   int
}

// Stats is a snapshot of the Server's counters.
type Stats struct {
	ConnsOpened, ConnsClosed int64
	ConnsSlow                int64 // dropped because their queue stayed full for SlowTimeout
	ConnsTooFast             int64 // closed for sending more than 10 (futures) / 5 (spot) messages a second
	PongTimeouts             int64 // closed for not answering a ping in time
	FramesSent, BytesSent    int64 // market and injected frames written, and all bytes written
	Subscriptions            int64 // streams subscribed, cumulative
	Requests                 int64 // client control messages
	ReplaySkipped            int64 // replay records that could not be read or decoded
	REST                     map[RESTKey]int64
	Faults                   map[string]int64 // injected faults by kind
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	out := Stats{
		ConnsOpened: st.connsOpened.Load(), ConnsClosed: st.connsClosed.Load(), ConnsSlow: st.connsSlow.Load(),
		ConnsTooFast: st.connsTooFast.Load(), PongTimeouts: st.pongTimeouts.Load(),
		FramesSent: st.framesSent.Load(), BytesSent: st.bytesSent.Load(), Subscriptions: st.subscriptions.Load(),
		Requests: st.requests.Load(), ReplaySkipped: st.replaySkipped.Load(),
	}
	st.mu.Lock()
	out.REST = maps.Clone(st.rest)
	out.Faults = maps.Clone(st.faults)
	st.mu.Unlock()
	return out
}

func (s *Server) fault(kind string) { s.faultN(kind, 1) }

func (s *Server) faultN(kind string, n int64) {
	s.stats.mu.Lock()
	s.stats.faults[kind] += n
	s.stats.mu.Unlock()
}
