package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/klagg/klagg/exchange"
	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
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
	outDir := fs.String("out-dir", "out/live", "directory for <SYMBOL>-<interval>.csv files of closed klines")
	refresh := fs.Duration("refresh", time.Minute, "how often exchangeInfo is read for listings and delistings")
	stale := fs.Duration("stale", 30*time.Second, "silence after which a connection is checked against REST and replaced if its symbols traded")
	rotate := fs.Duration("rotate", 0, "connection age at which it is replaced (default 23h30m)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: klagg run [flags]\n\nFollows every symbol of a Binance market and writes exact klines.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
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
	lcfg := pipeline.DefaultLiveConfig(market)
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

	log := newLogger(e.debug)
	defer log.Sync() //nolint:errcheck // stderr
	log.Info("klagg starting", zap.String("market", market.String()), zap.String("ws", lcfg.Endpoints.WS),
		zap.String("rest", lcfg.Endpoints.REST), zap.String("out_dir", *outDir))
	table := parse.NewSymbolTable()
	live, err := pipeline.NewLive(ctx, lcfg, table, log)
	if err != nil {
		return err
	}
	cfg.Clock = live.Clock
	cfg.Updates = false // the CSV sink writes closed klines only
	// Gap fills that wait for REST weight arrive late: keep a minute of closed
	// klines of every interval to correct (1s klines need 61 of them).
	cfg.Shard.Lateness = time.Minute.Milliseconds()
	sink, err := pipeline.NewCSVDir(*outDir, table, cfg.Shard.Intervals)
	if err != nil {
		return err
	}
	p, err := pipeline.New(cfg, table, live.Sources(), sink, log)
	if err != nil {
		return err
	}
	log.Info("following symbols", zap.Int("symbols", live.Stats().Symbols), zap.Int("connections", live.Stats().Slots))
	stop, err := profiles(e.cpuprof, e.memprof)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	live.Start(ctx, p)
	runErr := p.Run(ctx)
	cancel() // the pipeline may also stop on its own error
	live.Wait()
	if err := stop(); err != nil {
		return err
	}
	p.Stats().WriteSummary(os.Stdout)
	ls := live.Stats()
	fmt.Printf("live        %d connects (%d failed), %d reconnects, %d rotations, %d stale replaced\n", ls.Connects, ls.ConnectFailures, ls.Reconnects, ls.Rotations, ls.StaleReplaced)
	fmt.Printf("gaps        %d opened, %d filled (%d trades), %d unfillable (%d trades lost)\n", ls.GapsOpened, ls.GapsFilled, ls.TradesFilled, ls.GapsUnfillable, ls.TradesUnfillable)
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *replay != "" {
		cfg.Replay = strings.Split(*replay, ",")
	}
	f, err := fakex.ParseFaults(*faults)
	if err != nil {
		return err
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
