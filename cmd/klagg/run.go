package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/klagg/klagg/api"
	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/feed"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/store"
)

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, strings.ToUpper(f))
		}
	}
	return out
}

func runLive(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var e engineFlags
	e.register(fs)
	wsURL := fs.String("ws-url", "", "WebSocket base URL (default: Binance's for the market)")
	restURL := fs.String("rest-url", "", "REST base URL (default: Binance's for the market)")
	symbols := fs.String("symbols", "", "comma-separated symbols to follow (default: every tradable symbol)")
	quotes := fs.String("quote", "", "with no --symbols: only symbols quoted in these assets, e.g. USDT,USDC")
	perConn := fs.Int("streams-per-conn", 0, "streams per connection (default 200 futures, 1024 spot)")
	conns := fs.Int("conns", 0, "connection slots (default: enough for the universe plus one spare)")
	outDir := fs.String("out-dir", "", "also write closed klines to <SYMBOL>-<interval>.csv files in this directory (appended, crash-safe)")
	var stf storeFlags
	stf.register(fs, "data/klagg.db")
	refresh := fs.Duration("refresh", time.Minute, "how often exchangeInfo is read for listings and delistings")
	stale := fs.Duration("stale", 30*time.Second, "silence after which a connection is checked against REST and replaced if its symbols traded")
	rotate := fs.Duration("rotate", 0, "connection age at which it is replaced (default 23h30m)")
	backfill := registerBackfillFlag(fs)
	resumeWithin := fs.Duration("resume-within", 5*time.Minute, "a restart fetches every trade a symbol missed when its last stored one is this recent; an older one starts afresh and the klines it missed come from REST klines")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error (--debug is --log-level debug)")
	logJSON := fs.Bool("log-json", false, "structured JSON logs instead of console lines")
	var sf serveFlags
	sf.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: klagg run [flags]\n\nFollows every symbol of a Binance market and writes exact klines.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkBackfillFlag(*backfill); err != nil {
		return err
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	market, err := exchange.ParseMarket(e.market)
	if err != nil {
		return err
	}
	// Every mistake fails here, before the network is touched.
	maxPerConn := exchange.DefaultLimits(market).MaxStreamsPerConn
	switch {
	case *perConn < 0 || *perConn > maxPerConn:
		return usageErrorf("--streams-per-conn %d: want 1 to %d for %s (0: the default)", *perConn, maxPerConn, market)
	case *conns < 0:
		return usageErrorf("--conns %d: must not be negative (0: enough for the universe)", *conns)
	case *refresh <= 0:
		return usageErrorf("--refresh %v: want a positive duration", *refresh)
	case *stale <= 0:
		return usageErrorf("--stale %v: want a positive duration", *stale)
	case *resumeWithin <= 0:
		return usageErrorf("--resume-within %v: want a positive duration", *resumeWithin)
	case *rotate < 0 || *rotate >= 24*time.Hour:
		return usageErrorf("--rotate %v: want less than Binance's 24h cut (0: the default)", *rotate)
	}
	for _, f := range []struct{ name, url, schemes string }{{"ws-url", *wsURL, "ws wss"}, {"rest-url", *restURL, "http https"}} {
		if u, err := url.Parse(f.url); f.url != "" && (err != nil || u.Host == "" || !slices.Contains(strings.Fields(f.schemes), u.Scheme)) {
			return usageErrorf("--%s %q: want %s://host[:port]", f.name, f.url, strings.ReplaceAll(f.schemes, " ", "|"))
		}
	}
	lcfg := feed.DefaultConfig(market)
	if *wsURL != "" {
		lcfg.Endpoints.WS = strings.TrimRight(*wsURL, "/")
	}
	if *restURL != "" {
		lcfg.Endpoints.REST = strings.TrimRight(*restURL, "/")
	}
	lcfg.Symbols = splitList(*symbols)
	lcfg.QuoteAssets = splitList(*quotes)
	lcfg.StreamsPerConn = *perConn
	lcfg.Conns = *conns
	lcfg.Refresh = *refresh
	lcfg.Stale = *stale
	if *rotate > 0 {
		lcfg.Rotate = *rotate
	}

	scfg, withStore, err := stf.config(market.String(), cfg.Shard.Intervals)
	if err != nil {
		return err
	}
	level, err := parseLevel(*logLevel)
	if err != nil {
		return err
	}
	if e.debug {
		level = zapcore.DebugLevel
	}
	log := buildLogger(level, *logJSON)
	defer log.Sync() //nolint:errcheck // stderr
	table := parse.NewSymbolTable()
	// A symbol's klines wait for its missing trades for at most MaxHold; what
	// REST brings later must still find its kline in the correction history.
	cfg.Shard.Lateness = (lcfg.MaxHold + time.Minute).Milliseconds()
	// The feed hands over each symbol's trades in aggTrade id order (it holds
	// a symbol while its missing trades are fetched): a trade in a later
	// period closes the earlier ones at once, not a grace later.
	cfg.Shard.PromptClose = true
	srv, late, err := sf.newServer(market.String(), table, cfg.Shard.Intervals, log)
	if err != nil {
		return err
	}
	log.Info("klagg starting", zap.String("market", market.String()), zap.String("ws", lcfg.Endpoints.WS),
		zap.String("rest", lcfg.Endpoints.REST), zap.String("db", stf.path), zap.String("out_dir", *outDir))
	if srv != nil {
		// Served while the universe is read: /healthz answers, /readyz says why not yet.
		if err := srv.Start(); err != nil {
			return err
		}
		defer srv.Close()
		fmt.Printf("serving     http://%s/ (chart), Binance-compatible API under http://%s, /metrics, /readyz\n", srv.Addr(), srv.Addr())
	}
	var db *store.DB
	var plan resumePlan
	var newest map[string]int64
	if withStore {
		if db, err = openStore(ctx, scfg); err != nil {
			return err
		}
		defer db.Close()
		if late != nil { // REST klines read the store; not once it is closed
			late.history.Store(db)
			defer late.history.Store(nil)
		}
		// Where each symbol resumes: its klines kept, its last trade applied.
		now := time.Now()
		resumeSince := now.Add(-*resumeWithin).UnixMilli()
		closedSince := min(resumeSince, now.Add(-time.Duration(cfg.Shard.Lateness)*time.Millisecond).UnixMilli())
		series, err := db.LoadSeries(ctx, market.String(), closedSince)
		if err != nil {
			return fmt.Errorf("cannot read the kline database %s: %w", scfg.Path, err)
		}
		if plan, err = planResume(ctx, db, market.String(), series, cfg.Shard, resumeSince, log); err != nil {
			return fmt.Errorf("cannot read the kline database %s: %w", scfg.Path, err)
		}
		// What is stored before this run writes: the periods between it and this
		// run's first klines are the backfill's (fillHoles).
		if newest, err = db.Newest(ctx, market.String()); err != nil {
			return fmt.Errorf("cannot read the kline database %s: %w", scfg.Path, err)
		}
		lcfg.Resume = plan.resume
		if n := len(plan.resume); n > 0 {
			log.Info("resuming from the kline database", zap.String("db", scfg.Path), zap.Int("symbols", n))
		}
	}
	var attempts attemptLog
	lcfg.Client.HTTP = attempts.wrapHTTP(lcfg.Client.HTTP)
	live, err := feed.New(ctx, lcfg, table, log)
	if err != nil {
		if ctx.Err() != nil {
			// Ctrl-C or SIGTERM while the universe could not be read (offline, say):
			// a clean stop that says what was tried, not a failure.
			fmt.Printf("stopped     before the symbol universe could be read\nuniverse    %s\n", attempts.summary())
			return nil
		}
		return err
	}
	cfg.Clock = live.Clock
	var out sinks
	var writer *store.Writer
	if db != nil {
		if writer, err = store.NewWriter(ctx, db, table, cfg.Shard.Intervals, log.Named("store")); err != nil {
			return err
		}
		out = append(out, writer)
		cfg.Updates = true // open klines are checkpointed: a restart resumes them
	}
	if *outDir != "" {
		csv, err := store.NewCSVDir(*outDir, table, cfg.Shard.Intervals, store.DefaultCSVConfig(), log.Named("csv"))
		if err != nil {
			return err
		}
		out = append(out, csv)
	}
	var sink pipeline.Sink = out
	if srv != nil {
		cfg.Updates = true // the API serves open klines
		sink = api.Sink{Server: srv, Next: out}
	}
	p, err := pipeline.New(cfg, table, live.Sources(), sink, log)
	if err != nil {
		return err
	}
	if n := plan.restore(p, table, log); n > 0 {
		log.Info("klines restored", zap.Int("symbols", n))
	}
	// Past klines from REST, before each series' first built from trades, at
	// the lowest priority on the feed's REST budget.
	bf := newBackfill(live, db, market.String(), cfg.Shard.Intervals, *backfill, defaultBackfillOptions(), log)
	bf.fillHoles(newest, plan.resume)
	if srv != nil {
		clock, status := live.Clock, daemonStatus(p, live, live.Clock)
		late.clock.Store(&clock)
		late.status.Store(&status)
		checks := []api.ReadyCheck{{Name: "connected", Check: func() error {
			if st := live.Stats(); st.Connected == 0 || st.Holding > 0 {
				return fmt.Errorf("%d of %d connections up, %d symbols waiting for missing trades", st.Connected, st.Slots, st.Holding)
			}
			return nil
		}}}
		if writer != nil {
			checks = append(checks, api.ReadyCheck{Name: "store writable", Check: func() error {
				if c := writer.Counters(); c.Lag > 10*time.Second {
					return fmt.Errorf("nothing committed for %v (%d write errors so far)", c.Lag.Round(time.Second), c.WriteErrors)
				}
				return nil
			}})
			storeMetrics(srv.Metrics(), writer)
		}
		checks = append(checks, api.ReadyCheck{Name: "backfill done", Check: bf.Ready})
		backfillMetrics(srv.Metrics(), bf)
		late.ready.Store(&checks)
		daemonMetrics(srv.Metrics(), p, live, live.Clock)
	}
	log.Info("following symbols", zap.Int("symbols", live.Stats().Symbols), zap.Int("connections", live.Stats().Slots))
	stop, err := profiles(e.cpuprof, e.memprof)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	live.Start(ctx, p)
	bf.start(ctx)
	runErr := p.Run(ctx)
	cancel() // the pipeline may also stop on its own error
	live.Wait()
	bf.wait()
	if err := stop(); err != nil {
		return err
	}
	ps, ls := p.Stats(), live.Stats()
	ps.WriteSummary(os.Stdout)
	ls.WriteSummary(os.Stdout)
	writeAccount(os.Stdout, ps, ls)
	return runErr
}

func runFakex(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fakex", flag.ContinueOnError)
	cfg := fakex.DefaultConfig()
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "address to serve on")
	fs.StringVar(&cfg.Market, "market", cfg.Market, "futures or spot")
	replay := fs.String("replay", "", "comma-separated recordings to serve (NDJSON frames, aggTrades CSV); default: synthetic feed")
	fs.Float64Var(&cfg.Speed, "speed", cfg.Speed, "replay speed factor (0: as fast as possible)")
	fs.IntVar(&cfg.Symbols, "symbols", cfg.Symbols, "synthetic symbols")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "synthetic trades per second (0: as fast as possible)")
	faults := fs.String("faults", "", "faults to inject, see below")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: klagg fakex --listen 127.0.0.1:PORT --market futures|spot (--replay FILE[,FILE...] [--speed X] | --symbols N --rate R) [--faults SPEC]\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\n%s\n", fakex.FaultHelp)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg.Replay = splitTrimmed(*replay)
	switch {
	case len(cfg.Replay) == 0 && cfg.Symbols <= 0:
		return usageErrorf("--symbols %d: want a positive count", cfg.Symbols)
	case cfg.Rate < 0 || cfg.Speed < 0:
		return usageErrorf("--rate %v, --speed %v: must not be negative", cfg.Rate, cfg.Speed)
	}
	f, err := fakex.ParseFaults(*faults)
	if err != nil {
		return usageErrorf("--faults: %v", err)
	}
	cfg.Faults = f
	srv, err := fakex.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	fmt.Printf("fakex serving %s: --ws-url %s --rest-url %s\n", cfg.Market, srv.WSURL(), srv.RESTURL())
	select {
	case <-ctx.Done():
	case <-srv.Done():
		fmt.Println("replay finished; serving REST until interrupted")
		<-ctx.Done()
	}
	st := srv.Stats()
	fmt.Printf("fakex sent %d frames on %d connections\n", st.FramesSent, st.ConnsOpened)
	return nil
}

// writeAccount prints where every trade received went: the live feed's buckets
// and, for those handed over, the shards'.
func writeAccount(w io.Writer, ps *pipeline.Stats, ls feed.Stats) {
	applied := ps.Shard.Trades - ps.Shard.TooLateTrades
	held := ls.Held + ls.HeldAtExit
	fmt.Fprintf(w, "account     %d received + %d from REST = %d applied + %d duplicates + %d rejected (%d unwanted, %d bogus) + %d too late + %d held at exit",
		ls.Received, ls.Filled, applied, ls.Duplicates+ps.Shard.Duplicates, ls.Unwanted+ls.Bogus, ls.Unwanted, ls.Bogus,
		ps.Shard.TooLateTrades, held)
	if ls.Received+ls.Filled != applied+ls.Duplicates+ps.Shard.Duplicates+ls.Unwanted+ls.Bogus+ps.Shard.TooLateTrades+held {
		fmt.Fprint(w, " (DOES NOT ADD UP: a bug, please report it)")
	}
	fmt.Fprintln(w)
}
