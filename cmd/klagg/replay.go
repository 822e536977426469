package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klagg/klagg/fakex"
	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/pipeline"
	"github.com/klagg/klagg/shard"
	"github.com/klagg/klagg/store"
)

// engineFlags are the pipeline settings every pipeline-running command shares.
type engineFlags struct {
	fs        *flag.FlagSet
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
	maxEmpty  time.Duration
}

// maxShards is pipeline.New's limit.
const maxShards = 1024

func (e *engineFlags) register(fs *flag.FlagSet) {
	e.fs = fs
	fs.StringVar(&e.market, "market", "futures", "futures or spot: picks the default intervals (spot has 1s)")
	fs.StringVar(&e.intervals, "intervals", "", "comma-separated intervals, Binance's (1s,1m,...,1w,1M) or custom (2m,10m,90m); default: all of Binance's for the market")
	fs.IntVar(&e.shards, "shards", 2, "aggregator shards (goroutines), 1 to 1024")
	fs.DurationVar(&e.grace, "grace", 2*time.Second, "how long after its close time a kline waits for late trades before it closes")
	fs.BoolVar(&e.flushOpen, "flush-open", false, "also write the klines still open at the end of the input")
	fs.StringVar(&e.cpuprof, "cpuprofile", "", "write a CPU profile to this file")
	fs.StringVar(&e.memprof, "memprofile", "", "write an allocation profile to this file")
	fs.BoolVar(&e.debug, "debug", false, "debug logging")
	fs.BoolVar(&e.pin, "pin", false, "lock each source (I/O) goroutine to an OS thread")
	fs.StringVar(&e.cpus, "cpus", "", "comma-separated CPUs to bind source goroutines to, round robin (Linux; implies --pin)")
	fs.DurationVar(&e.maxEmpty, "max-empty", 0, "stop writing empty klines once a symbol has been silent this long (the last one is flagged quiet) until it trades again; 0 writes every one, as Binance")
}

// config checks the engine flags and returns the pipeline configuration. Every
// mistake is a usageError found here, before any file, directory or connection
// is touched.
func (e *engineFlags) config() (pipeline.Config, error) {
	cfg := pipeline.DefaultConfig()
	switch e.market {
	case "futures", "spot":
	default:
		return cfg, usageErrorf("unknown --market %q (want futures or spot)", e.market)
	}
	cfg.Shard.Intervals = shard.BinanceIntervals(e.market == "spot")
	if flagSet(e.fs, "intervals") {
		if strings.TrimSpace(e.intervals) == "" {
			return cfg, usageErrorf("--intervals is empty: give a list such as 1m,5m,1h, or leave it out for all of Binance's")
		}
		ivs, err := shard.ParseIntervals(e.intervals)
		if err != nil {
			return cfg, usageErrorf("--intervals: %v", err)
		}
		cfg.Shard.Intervals = ivs
	}
	if e.shards < 1 || e.shards > maxShards {
		return cfg, usageErrorf("--shards %d: want 1 to %d", e.shards, maxShards)
	}
	if e.grace < 0 {
		return cfg, usageErrorf("--grace %v: must not be negative", e.grace)
	}
	if e.maxEmpty < 0 {
		return cfg, usageErrorf("--max-empty %v: must not be negative", e.maxEmpty)
	}
	cfg.Shard.MaxEmpty = e.maxEmpty.Milliseconds()
	cfg.Shards = e.shards
	cfg.Shard.Grace = e.grace.Milliseconds()
	cfg.FlushOpen = e.flushOpen
	if e.cpus != "" {
		if runtime.GOOS != "linux" {
			return cfg, usageErrorf("--cpus binds threads to CPUs on Linux only")
		}
		avail, desc := availableCPUs()
		for _, c := range splitTrimmed(e.cpus) {
			n, err := strconv.Atoi(c)
			if err != nil || n < 0 {
				return cfg, usageErrorf("--cpus: bad CPU %q (want numbers such as 0,1)", c)
			}
			if !slices.Contains(avail, n) {
				return cfg, usageErrorf("--cpus: CPU %d is not one klagg may run on (available: %s)", n, desc)
			}
			cfg.CPUs = append(cfg.CPUs, n)
		}
		if len(cfg.CPUs) == 0 {
			return cfg, usageErrorf("--cpus is empty")
		}
	}
	cfg.PinSources = e.pin || len(cfg.CPUs) > 0
	return cfg, nil
}

// availableCPUs returns the CPUs this process may run on, and the list as text: on
// Linux its affinity mask (Cpus_allowed_list in /proc/self/status: with taskset -c
// 2,3 those are 2 and 3, not 0 and 1), else 0 to runtime.NumCPU()-1.
func availableCPUs() ([]int, string) {
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if list, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				list = strings.TrimSpace(list)
				if cpus, err := parseCPUList(list); err == nil && len(cpus) > 0 {
					return cpus, list
				}
			}
		}
	}
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus, fmt.Sprintf("0-%d", len(cpus)-1)
}

// parseCPUList parses Linux's CPU list format, such as "0-3,8,10-11".
func parseCPUList(list string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cannot parse CPU list %q: %w", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cannot parse CPU list %q: bad range %q", list, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

func runReplay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	var e engineFlags
	e.register(fs)
	input := fs.String("input", "", "comma-separated input files: NDJSON of raw WebSocket frames (.ndjson, .jsonl, .json or .log, plain or .gz), or data.binance.vision aggTrades CSV (.csv, .csv.gz or .zip; a symbol's day files are read in date order)")
	outDir := fs.String("out-dir", "", "directory for <SYMBOL>-<interval>.csv files")
	var stf storeFlags
	stf.register(fs, "")
	bulk := fs.String("bulk", "auto", "with --db: auto loads a new database file in the store's bulk mode (key index built once at the end) and upserts into an existing one, where a stored whole kline is not replaced by one this replay flags partial; on bulk loads in any case (no such check), off always upserts")
	setUsage(fs, "klagg replay --input FILE[,FILE...] (--out-dir DIR | --db FILE | both) [flags]",
		"Replays recorded frames or aggTrades CSVs through the pipeline into kline CSVs (--out-dir),\n"+
			"the kline database the daemon uses (--db), or both.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	inputs := splitTrimmed(*input)
	if len(inputs) == 0 || (strings.TrimSpace(*outDir) == "" && strings.TrimSpace(stf.path) == "") {
		return usageErrorf("--input and --out-dir are required (or --db FILE instead of --out-dir, or both)")
	}
	if flagSet(fs, "db") && strings.TrimSpace(stf.path) == "" {
		return usageErrorf("--db is empty: give the database file, such as data/klagg.db")
	}
	switch *bulk {
	case "auto", "on", "off":
	default:
		return usageErrorf("--bulk %q: want auto, on or off", *bulk)
	}
	if *bulk != "auto" && stf.path == "" {
		return usageErrorf("--bulk needs a --db")
	}
	cfg, err := e.config()
	if err != nil {
		return err
	}
	cfg.LearnSymbols = true
	scfg, withStore, err := stf.config(e.market, cfg.Shard.Intervals)
	if err != nil {
		return err
	}
	var out replayOutput
	out.outDir = *outDir
	defer out.closeDB()
	if withStore {
		_, statErr := os.Stat(scfg.Path)
		exists := statErr == nil
		scfg.Bulk = *bulk == "on" || (*bulk == "auto" && !exists)
		out.bulk, out.market = scfg.Bulk, scfg.Market
		if exists {
			// An existing database is opened (locked) before any input is read: one
			// a running daemon writes fails here at once, with the holder's pid.
			if out.db, err = openStore(ctx, scfg); err != nil {
				return err
			}
		}
	}
	// Opens every input: a missing, misnamed or unreadable one fails here, before
	// the output directory or a new database is created.
	sources, err := pipeline.ReplaySources(inputs)
	if err != nil {
		return err
	}
	if withStore && out.db == nil {
		if out.db, err = openStore(ctx, scfg); err != nil {
			return err
		}
	}
	st, err := runPipeline(ctx, &e, cfg, sources, parse.NewSymbolTable(), out)
	if err == nil && st.Sources.Trades == 0 && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "klagg replay: warning: the input holds no aggTrade: no kline written\n")
	}
	if err == nil {
		err = out.closeDB()
	}
	return err
}

// replayOutput is where runPipeline writes klines: a CSV directory, a kline
// database, or both.
type replayOutput struct {
	outDir string    // "" none
	db     *store.DB // nil none; closed by closeDB
	market string    // the database's market: series are keyed by it
	bulk   bool      // the database is loaded with store.Config.Bulk
}

// closeDB closes the database once; a second call does nothing.
func (o *replayOutput) closeDB() error {
	if o.db == nil {
		return nil
	}
	err := o.db.Close()
	o.db = nil
	if err != nil {
		return fmt.Errorf("cannot close the kline database: %w", err)
	}
	return nil
}

func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var e engineFlags
	e.register(fs)
	symbols := fs.Int("symbols", 200, "synthetic symbols")
	trades := fs.Int("trades", 2_000_000, "synthetic aggTrades")
	rate := fs.Float64("rate", 200, "trades per second of market time (sets how many minutes the feed spans)")
	outDir := fs.String("out-dir", "out/demo", "directory for <SYMBOL>-<interval>.csv files")
	setUsage(fs, "klagg demo [--symbols N] [--trades N] [--rate R] [--out-dir DIR] [flags]",
		"Generates a synthetic feed (aggTrades with depth and bookTicker frames mixed in) and replays it\nthrough the real pipeline into kline CSVs.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *symbols < 1:
		return usageErrorf("--symbols %d: want at least 1", *symbols)
	case *trades < 1:
		return usageErrorf("--trades %d: want at least 1", *trades)
	case !(*rate > 0) || math.IsInf(*rate, 0):
		return usageErrorf("--rate %v: want a positive number", *rate)
	case strings.TrimSpace(*outDir) == "":
		return usageErrorf("--out-dir is empty")
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
	_, err = runPipeline(ctx, &e, cfg, []pipeline.Source{&pipeline.Frames{Frames: frames}}, table, replayOutput{outDir: *outDir})
	return err
}

// runPipeline runs sources into a CSV directory, a kline database or both,
// prints the summary and returns the pipeline's counters.
func runPipeline(ctx context.Context, e *engineFlags, cfg pipeline.Config, sources []pipeline.Source, table *parse.SymbolTable, out replayOutput) (*pipeline.Stats, error) {
	log := newLogger(e.debug)
	defer log.Sync() //nolint:errcheck // stderr
	var sink sinks
	var csv *pipeline.CSVDir
	var writer *store.Writer
	var guard *keepWhole
	if out.db != nil {
		var err error
		if writer, err = store.NewWriter(ctx, out.db, table, cfg.Shard.Intervals, log.Named("store")); err != nil {
			return nil, err
		}
		if out.bulk {
			sink = append(sink, writer)
		} else {
			// Stored rows may be whole where this replay's first klines are
			// partial (an input that starts later than one replayed before).
			guard = &keepWhole{Writer: writer, db: out.db, market: out.market, table: table, intervals: cfg.Shard.Intervals}
			sink = append(sink, guard)
		}
	}
	if out.outDir != "" {
		var err error
		if csv, err = pipeline.NewCSVDir(out.outDir, table, cfg.Shard.Intervals); err != nil {
			if writer != nil {
				err = errors.Join(err, writer.Close())
			}
			return nil, err
		}
		sink = append(sink, csv)
	}
	p, err := pipeline.New(cfg, table, sources, sink, log)
	if err != nil {
		return nil, errors.Join(err, sink.Close())
	}
	stop, err := profiles(e.cpuprof, e.memprof)
	if err != nil {
		return nil, errors.Join(err, sink.Close())
	}
	start := time.Now()
	runErr := p.Run(ctx) // closes the sinks: the writer commits (a bulk load builds its index)
	elapsed := time.Since(start)
	if err := stop(); err != nil {
		return nil, err
	}
	st := p.Stats()
	st.WriteSummary(os.Stdout)
	if csv != nil {
		fmt.Printf("output      %d files in %s\n", len(csv.Files()), out.outDir)
	}
	if writer != nil {
		c := writer.Counters()
		mode := "upsert"
		if out.bulk {
			mode = "bulk load"
		}
		fmt.Printf("database    %d klines written to %s (%s, %d transactions) in %v: %.0f rows/s",
			c.Rows, out.db.Path(), mode, c.Batches, elapsed.Round(time.Millisecond), float64(c.Rows)/elapsed.Seconds())
		if guard != nil && guard.kept > 0 {
			fmt.Printf("; %d stored whole klines kept over this replay's partial ones", guard.kept)
		}
		fmt.Println()
	}
	if empty := st.Shard.EmptyKlines; cfg.Shard.MaxEmpty == 0 && empty > 1_000_000 && empty > 9*(st.Shard.ClosedKlines-empty) {
		// Inputs far apart in time (recordings months apart) fill the silence
		// with empty klines, as Binance would: say so, and how to bound it.
		fmt.Fprintf(os.Stderr, "klagg: %d of the %d klines written are empty: the input has long silences (files far apart in time?); --max-empty 1h stops them after an hour of silence\n",
			empty, st.Shard.ClosedKlines)
	}
	return st, runErr
}

// keepWhole is the store sink of a replay into a database that may hold klines
// already: a closed kline this replay flags partial (its input starts after the
// kline opened) does not replace a stored closed kline of the same key that is
// not partial (from an input that covered the whole period), so replaying a part
// of what was replayed before never makes the store worse. Everything else goes
// to the Writer: the store's key (series, open_time) makes a kline written again
// replace its row. The sink goroutine calls Kline; a partial kline costs one read
// of the database (at most one per series and replay: only a series' first
// klines are partial).
type keepWhole struct {
	*store.Writer
	db        *store.DB
	market    string
	table     *parse.SymbolTable
	intervals []shard.Interval
	kept      uint64 // partial klines not written: a whole one is stored
}

func (s *keepWhole) Kline(k *shard.Kline) error {
	if k.Closed && !k.Mark && k.Flags&shard.FlagPartial != 0 && int(k.Interval) < len(s.intervals) {
		symbol, interval := s.table.Load().Name(k.Symbol), s.intervals[k.Interval].Name
		stored, err := s.db.Klines(context.Background(), s.market, symbol, interval, k.OpenTime, k.OpenTime, 1)
		if err != nil {
			return fmt.Errorf("cannot read the stored kline %s %s %d: %w", symbol, interval, k.OpenTime, err)
		}
		if len(stored) == 1 && stored[0].Closed && stored[0].Flags&shard.FlagPartial == 0 {
			s.kept++
			return nil
		}
	}
	return s.Writer.Kline(k)
}
