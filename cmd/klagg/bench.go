package main

import (
	"context"
	"flag"
	"fmt"
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
	fs.BoolVar(&cfg.Pin, "pin", false, "lock the source goroutine to an OS thread")
	cpu := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	mem := fs.String("memprofile", "", "write an allocation profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
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
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(res)
	}
	fmt.Printf("klagg      %.0f trades/s (%d shards, %d symbols, %d intervals), %.3f allocs/trade\n", res.TradesPerSec, res.Shards, res.Symbols, res.Intervals, res.AllocsPerTrade)
	fmt.Printf("naive      %.0f trades/s   speedup %.1fx\n", res.NaiveTradesPerSec, res.SpeedupVsNaive)
	fmt.Printf("latency    p50 %.1f us  p99 %.1f us  max %.1f us at %.0f trades/s (%d samples)\n", res.P50LatencyUS, res.P99LatencyUS, res.MaxLatencyUS, res.AchievedRate, res.LatencySamples)
	fmt.Printf("took       %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}
