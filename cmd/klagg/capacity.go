package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/klagg/klagg/bench"
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
	debug := fs.Bool("debug", false, "log the daemon")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rates != "" {
		cfg.Rates = nil
		for _, r := range strings.Split(*rates, ",") {
			v, err := strconv.ParseFloat(r, 64)
			if err != nil || v <= 0 {
				return fmt.Errorf("bad rate %q", r)
			}
			cfg.Rates = append(cfg.Rates, v)
		}
	}
	if *debug {
		cfg.Log = newLogger(true)
	}
	res, err := bench.RunCapacity(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(res)
	}
	for _, s := range res.Steps {
		fmt.Printf("offered %9.0f/s  achieved %9.0f/s  lost %d  p99 %8.0f us  %s\n", s.OfferedRate, s.AchievedRate, s.Lost, s.P99LatencyUS, s.FailureReason)
	}
	fmt.Printf("capacity   %.0f trades/s sustained, p99 %.0f us, %d trades lost\n", res.MaxSustainedTradesPerSec, res.P99LatencyUSAtMax, res.LostTrades)
	return nil
}
