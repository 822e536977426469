package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
)

// engineFlags are the pipeline settings every pipeline-running command shares.
type engineFlags struct {
	market    string
	intervals string
	shards    int
	grace     time.Duration
	flushOpen bool
	cpuprof   string
	memprof   string
	debug     bool
	cpus      string
	pin       bool
}

func (e *engineFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.market, "market", "futures", "futures or spot: picks the default intervals (spot has 1s)")
	fs.StringVar(&e.intervals, "intervals", "", "comma-separated intervals, Binance's (1s,1m,...,1w,1M) or custom (2m,10m,90m); default: all of Binance's for the market")
	fs.IntVar(&e.shards, "shards", 2, "aggregator shards (goroutines)")
	fs.DurationVar(&e.grace, "grace", 2*time.Second, "how long after its close time a kline waits for late trades before it closes")
	fs.BoolVar(&e.flushOpen, "flush-open", false, "also write the klines still open at the end of the input")
	fs.StringVar(&e.cpuprof, "cpuprofile", "", "write a CPU profile to this file")
	fs.StringVar(&e.memprof, "memprofile", "", "write an allocation profile to this file")
	fs.BoolVar(&e.debug, "debug", false, "debug logging")
	fs.BoolVar(&e.pin, "pin", false, "lock each source (I/O) goroutine to an OS thread")
	fs.StringVar(&e.cpus, "cpus", "", "comma-separated CPUs to bind source goroutines to, round robin (Linux; implies --pin)")
}

func (e *engineFlags) config() (pipeline.Config, error) {
	cfg := pipeline.DefaultConfig()
	switch e.market {
	case "futures", "spot":
	default:
		return cfg, fmt.Errorf("unknown market %q (want futures or spot)", e.market)
	}
	cfg.Shard.Intervals = shard.BinanceIntervals(e.market == "spot")
	if e.intervals != "" {
		ivs, err := shard.ParseIntervals(e.intervals)
		if err != nil {
			return cfg, err
		}
		cfg.Shard.Intervals = ivs
	}
	cfg.Shards = e.shards
	cfg.Shard.Grace = e.grace.Milliseconds()
	cfg.FlushOpen = e.flushOpen
	cfg.PinSources = e.pin
	for _, c := range splitList(e.cpus) {
		n, err := strconv.Atoi(c)
		if err != nil || n < 0 {
			return cfg, fmt.Errorf("bad CPU %q in --cpus", c)
		}
		cfg.CPUs = append(cfg.CPUs, n)
	}
	cfg.PinSources = e.pin || len(cfg.CPUs) > 0
	return cfg, nil
}

func runReplay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var e engineFlags
	e.register(fs)
	input := fs.String("input", "", "comma-separated input files: NDJSON of raw WebSocket frames (plain or .gz), or data.binance.vision aggTrades CSV (.csv or .zip)")
	outDir := fs.String("out-dir", "", "directory for <SYMBOL>-<interval>.csv files")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: klagg replay --input FILE[,FILE...] --out-dir DIR [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *input == "" || *outDir == "" {
		fs.Usage()
		return fmt.Errorf("--input and --out-dir are required")
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	cfg.LearnSymbols = true
	sources, err := pipeline.ReplaySources(strings.Split(*input, ","))
	if err != nil {
		return err
	}
	return runPipeline(ctx, &e, cfg, sources, parse.NewSymbolTable(), *outDir)
}

func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var e engineFlags
	e.register(fs)
	symbols := fs.Int("symbols", 200, "synthetic symbols")
	trades := fs.Int("trades", 2_000_000, "synthetic aggTrades")
	rate := fs.Float64("rate", 200, "trades per second of market time (sets how many minutes the feed spans)")
	outDir := fs.String("out-dir", "out/demo", "directory for <SYMBOL>-<interval>.csv files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	gc := fakex.DefaultGenConfig()
	gc.Market = e.market
	gc.Symbols = *symbols
	gc.Rate = *rate
	gc.OtherEvery = 10
	gen := fakex.NewGenerator(gc)
	start := time.Now()
	frames := gen.Frames(*trades)
	fmt.Printf("generated   %d synthetic %s frames for %d symbols in %v\n", len(frames), e.market, *symbols, time.Since(start).Round(time.Millisecond))
	table := parse.NewSymbolTable()
	table.Add(gen.Symbols()...)
	if err := runPipeline(ctx, &e, cfg, []pipeline.Source{&pipeline.Frames{Frames: frames}}, table, *outDir); err != nil {
		return err
	}
	return nil
}

// runPipeline runs sources into a CSV directory and prints the summary.
func runPipeline(ctx context.Context, e *engineFlags, cfg pipeline.Config, sources []pipeline.Source, table *parse.SymbolTable, outDir string) error {
	log := newLogger(e.debug)
	defer log.Sync() //nolint:errcheck // stderr
	sink, err := pipeline.NewCSVDir(outDir, table, cfg.Shard.Intervals)
	if err != nil {
		return err
	}
	p, err := pipeline.New(cfg, table, sources, sink, log)
	if err != nil {
		return err
	}
	stop, err := profiles(e.cpuprof, e.memprof)
	if err != nil {
		return err
	}
	runErr := p.Run(ctx)
	if err := stop(); err != nil {
		return err
	}
	p.Stats().WriteSummary(os.Stdout)
	fmt.Printf("output      %d files in %s\n", len(sink.Files()), outDir)
	return runErr
}
