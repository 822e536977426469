package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"time"

	"github.com/klagg/klagg/bench"
)

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	cfg := bench.DefaultE2EConfig()
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "throughput phase; the latency phase runs half as long")
	fs.IntVar(&cfg.Symbols, "symbols", cfg.Symbols, "synthetic symbols")
	fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "aggregator shards")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "offered trades per second in the latency phase")
	fs.IntVar(&cfg.Frames, "frames", 2_000_000, "synthetic frames generated once and replayed")
	fs.StringVar(&cfg.Market, "market", cfg.Market, "futures or spot frame layout and intervals")
	fs.DurationVar(&cfg.YieldFor, "yield-for", cfg.YieldFor, "ring waiters yield this long before parking (negative: pipeline default)")
	fs.BoolVar(&cfg.FixedYield, "fixed-yield", false, "ring waiters yield for --yield-for on every wait, even when idle (the non-adaptive waiter)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "latency phase: offer frames this long before following any (0: a fifth of the measured time, at most 1s)")
	fs.BoolVar(&cfg.Pin, "pin", false, "lock the source goroutine to an OS thread")
	procs := fs.Int("procs", 0, "GOMAXPROCS for the run (0: the Go runtime's default, one per CPU)")
	cpu := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	mem := fs.String("memprofile", "", "write an allocation profile to this file")
	traceTo := fs.String("trace", "", "write an execution trace of the latency phase's measured part to this file (go tool trace)")
	setUsage(fs, "klagg bench [--json] [--duration 10s] [--symbols 500] [--shards 2] [--rate 100000] [flags]",
		"Runs the pipeline over synthetic frames beside a naive baseline, then a paced phase measuring\nlatency from a frame handed to the source to its kline update.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case cfg.Duration <= 0:
		return usageErrorf("--duration %v: want a positive duration", cfg.Duration)
	case cfg.Symbols < 1:
		return usageErrorf("--symbols %d: want at least 1", cfg.Symbols)
	case cfg.Shards < 1 || cfg.Shards > maxShards:
		return usageErrorf("--shards %d: want 1 to %d", cfg.Shards, maxShards)
	case !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0):
		return usageErrorf("--rate %v: want a positive number", cfg.Rate)
	case *procs < 0:
		return usageErrorf("--procs %d: want 0 (the runtime's default) or more", *procs)
	case cfg.Warmup < 0:
		return usageErrorf("--warmup %v: want a duration >= 0", cfg.Warmup)
	case cfg.Frames < 1:
		return usageErrorf("--frames %d: want at least 1", cfg.Frames)
	case cfg.Market != "futures" && cfg.Market != "spot":
		return usageErrorf("unknown --market %q (want futures or spot)", cfg.Market)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	var traceFile *os.File
	if *traceTo != "" {
		f, err := os.Create(*traceTo)
		if err != nil {
			return err
		}
		defer f.Close() // on an early return; closed and checked below
		traceFile, cfg.Trace = f, f
	}
	stop, err := profiles(*cpu, *mem)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := bench.RunE2E(ctx, cfg)
	if serr := stop(); err == nil {
		err = serr
	}
	if traceFile != nil {
		if cerr := traceFile.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(res)
	}
	fmt.Printf("klagg      %.0f trades/s (%d shards, %d symbols, %d intervals), %.3f allocs/trade\n", res.TradesPerSec, res.Shards, res.Symbols, res.Intervals, res.AllocsPerTrade)
	fmt.Printf("naive      %.0f trades/s   speedup %.1fx\n", res.NaiveTradesPerSec, res.SpeedupVsNaive)
	fmt.Printf("latency    p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us at %.0f trades/s (%d samples, %d GC cycles)\n",
		res.P50LatencyUS, res.P99LatencyUS, res.P999LatencyUS, res.MaxLatencyUS, res.AchievedRate, res.LatencySamples, res.LatencyGCCycles)
	fmt.Printf("took       %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}
