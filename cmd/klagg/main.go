// Command klagg turns Binance aggTrade streams into klines exactly as Binance computes
// them. Subcommands:
//
//	klagg run      the daemon: follow a Binance market live (what `make run` does)
//	klagg fakex    a fake Binance exchange on loopback, with faults
//	klagg demo     replay a synthetic feed klagg generates itself
//	klagg replay   replay recorded frames or data.binance.vision CSVs into kline CSVs
//	klagg bench    end-to-end benchmark against a naive baseline, as one JSON object
//	klagg capacity the daemon against fakex over loopback at rising rates
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type command struct {
	name, usage string
	run         func(ctx context.Context, args []string) error
}

var commands = []command{
	{"run", "the daemon: follow every symbol of a Binance market live and write exact klines", runLive},
	{"fakex", "a fake Binance exchange on loopback (replay or synthetic feed, fault injection)", runFakex},
	{"demo", "replay a synthetic feed through the real pipeline and print a summary", runDemo},
	{"replay", "replay recorded frames (NDJSON, .gz) or aggTrades CSVs (.csv, .zip) into kline CSVs", runReplay},
	{"bench", "end-to-end benchmark beside a naive baseline, printed as JSON", runBench},
	{"capacity", "fakex and the daemon over loopback WebSockets at rising rates: the sustained maximum", runCapacity},
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, c := range commands {
		if c.name == os.Args[1] {
			if err := c.run(ctx, os.Args[2:]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					os.Exit(2)
				}
				fmt.Fprintf(os.Stderr, "klagg %s: %v\n", c.name, err)
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "klagg: unknown command %q\n\n", os.Args[1])
	usage()
	os.Exit(2)
}

func usage() {
	var b strings.Builder
	b.WriteString("usage: klagg <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-8s %s\n", c.name, c.usage)
	}
	b.WriteString("\nRun 'klagg <command> -h' for a command's flags.\n")
	fmt.Fprint(os.Stderr, b.String())
}

// printJSON prints a result as one indented JSON object on stdout.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newLogger returns a sampled console logger on stderr: bad frames are logged with a
// truncated payload, and sampling keeps a flood of them from costing more than the
// frames themselves.
func newLogger(debug bool) *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Encoding = "console"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.DisableStacktrace = true
	if debug {
		cfg.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	}
	log, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return log
}

// profiles starts a CPU profile and arranges a heap profile; stop writes them.
func profiles(cpu, mem string) (stop func() error, err error) {
	var cpuFile *os.File
	if cpu != "" {
		if cpuFile, err = os.Create(cpu); err != nil {
			return nil, fmt.Errorf("cannot create CPU profile: %w", err)
		}
		if err = pprof.StartCPUProfile(cpuFile); err != nil {
			cpuFile.Close()
			return nil, fmt.Errorf("cannot start CPU profile: %w", err)
		}
	}
	return func() error {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			if err := cpuFile.Close(); err != nil {
				return err
			}
		}
		if mem == "" {
			return nil
		}
		f, err := os.Create(mem)
		if err != nil {
			return fmt.Errorf("cannot create heap profile: %w", err)
		}
		defer f.Close()
		return pprof.Lookup("allocs").WriteTo(f, 0)
	}, nil
}
