package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/klagg/klagg/bench"
	"github.com/klagg/klagg/shard"
)

func runCapacity(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("capacity", flag.ContinueOnError)
	cfg := bench.DefaultCapacityConfig()
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	fs.IntVar(&cfg.Symbols, "symbols", cfg.Symbols, "synthetic symbols")
	fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "WebSocket connections")
	fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "aggregator shards")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "all steps together")
	fs.DurationVar(&cfg.SLO, "slo", cfg.SLO, "p99 latency (exchange send to kline update) a step must stay under")
	fs.StringVar(&cfg.Market, "market", cfg.Market, "futures or spot")
	rates := fs.String("rates", "", "comma-separated offered trades/s per step (default 50k..2M)")
	intervals := fs.String("intervals", "", "comma-separated intervals (default: all of Binance's for the market, as klagg run)")
	fs.BoolVar(&cfg.AlignCloses, "align-closes", cfg.AlignCloses, "start each step 1s before a base-interval boundary (waiting up to one base interval, a minute for futures) so every step measures close delays")
	cpu := fs.String("cpuprofile", "", "write a CPU profile of the whole run (fakex and the daemon) to this file")
	mem := fs.String("memprofile", "", "write an allocation profile to this file")
	debug := fs.Bool("debug", false, "log the daemon")
	setUsage(fs, "klagg capacity [--json] [--symbols 1000] [--conns 4] [--duration 20s] [--slo 50ms] [flags]",
		"Runs fakex and the daemon over loopback WebSockets, raising the offered rate step by step, and\nreports the largest rate sustained with zero loss and p99 latency under the SLO, with each step's\nkline close delays (active and quiet symbols) and memory.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case cfg.Symbols < 1:
		return usageErrorf("--symbols %d: want at least 1", cfg.Symbols)
	case cfg.Conns < 1:
		return usageErrorf("--conns %d: want at least 1", cfg.Conns)
	case cfg.Shards < 1 || cfg.Shards > maxShards:
		return usageErrorf("--shards %d: want 1 to %d", cfg.Shards, maxShards)
	case cfg.Duration <= 0:
		return usageErrorf("--duration %v: want a positive duration", cfg.Duration)
	case cfg.SLO <= 0:
		return usageErrorf("--slo %v: want a positive duration", cfg.SLO)
	case cfg.Market != "futures" && cfg.Market != "spot":
		return usageErrorf("unknown --market %q (want futures or spot)", cfg.Market)
	}
	if flagSet(fs, "rates") {
		cfg.Rates = nil
		for _, r := range splitTrimmed(*rates) {
			v, err := strconv.ParseFloat(r, 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				return usageErrorf("--rates: bad rate %q (want positive trades/s such as 50000,100000)", r)
			}
			cfg.Rates = append(cfg.Rates, v)
		}
		if len(cfg.Rates) == 0 {
			return usageErrorf("--rates is empty: give rates such as 50000,100000, or leave it out for 50k to 2M")
		}
	}
	if flagSet(fs, "intervals") {
		if strings.TrimSpace(*intervals) == "" {
			return usageErrorf("--intervals is empty: give a list such as 1m,5m,1h, or leave it out for all of Binance's")
		}
		ivs, err := shard.ParseIntervals(*intervals)
		if err != nil {
			return usageErrorf("--intervals: %v", err)
		}
		cfg.Intervals = ivs
	}
	if *debug {
		cfg.Log = newLogger(true)
	}
	stop, err := profiles(*cpu, *mem)
	if err != nil {
		return err
	}
	res, err := bench.RunCapacity(ctx, cfg)
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(res)
	}
	fmt.Printf("base %s, %d intervals, prompt close %v, updates %v; close delays in ms (p50/p99/max, klines)\n",
		res.BaseInterval, res.Intervals, res.PromptClose, res.Updates)
	for _, s := range res.Steps {
		fmt.Printf("offered %9.0f/s  achieved %9.0f/s  lost %d  p99 %8.0f us  close active %s  quiet %s  rss %.0f/%.0f MB  daemon heap %.0f MB  %s\n",
			s.OfferedRate, s.AchievedRate, s.Lost, s.P99LatencyUS, closeText(s.CloseActive), closeText(s.CloseQuiet),
			s.Memory.RSSPeakMB, s.Memory.RSSEndMB, s.Memory.DaemonHeapMB, s.FailureReason)
	}
	fmt.Printf("capacity   %.0f trades/s sustained, p99 %.0f us, %d trades lost, close active %s, rss peak %.0f MB\n",
		res.MaxSustainedTradesPerSec, res.P99LatencyUSAtMax, res.LostTrades, closeText(res.CloseActiveAtMax), res.RSSPeakMB)
	return nil
}

func closeText(c bench.CloseDelays) string {
	if c.Klines == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f/%.0f/%.0f (%d)", c.P50MS, c.P99MS, c.MaxMS, c.Klines)
}
