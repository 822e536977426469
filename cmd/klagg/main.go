// Command klagg turns Binance aggTrade streams into klines exactly as Binance computes
// them. Subcommands:
//
//	klagg run      the daemon: follow a Binance market live (what `make run` does)
//	klagg fakex    a fake Binance exchange on loopback, with faults
//	klagg demo     replay a synthetic feed klagg generates itself
//	klagg replay   replay recorded frames or data.binance.vision CSVs into kline CSVs
//	klagg bench    end-to-end benchmark against a naive baseline, as one JSON object
//	klagg capacity the daemon against fakex over loopback at rising rates
//	klagg export   one stored series as CSV or Binance REST JSON
//	klagg verify   stored klines against Binance's official kline files
//
// `klagg help CMD` or `klagg CMD -h` lists a command's flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

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
	{"export", "write one stored series to stdout as CSV or Binance REST JSON", runExport},
	{"verify", "compare stored klines with Binance's official kline files, field by field", runVerify},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the first Ctrl-C stops cleanly; a second one kills at once
	}()
	os.Exit(runCommand(ctx, os.Args[1:]))
}

// runCommand runs the command args[0] with the flags args[1:] and returns the exit
// status: 0 for success and for help asked for (klagg -h, klagg help [CMD], klagg
// CMD -h), 2 for a usage mistake (unknown command or flag, bad flag value, stray
// argument), 1 for a failure. Help goes to stdout, mistakes to stderr.
func runCommand(ctx context.Context, args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 { // klagg help replay
			return runCommand(ctx, []string{args[1], "-h"})
		}
		usage(os.Stdout)
		return 0
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(ctx, args[1:])
		var uerr usageError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &uerr):
			fmt.Fprintf(os.Stderr, "klagg %s: %v\nRun 'klagg %s -h' for its flags.\n", name, err, name)
			return 2
		}
		fmt.Fprintf(os.Stderr, "klagg %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "klagg: unknown command %q\n\n", name)
	usage(os.Stderr)
	return 2
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: klagg <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-8s %s\n", c.name, c.usage)
	}
	b.WriteString("\nRun 'klagg <command> -h' or 'klagg help <command>' for a command's flags.\n")
	fmt.Fprint(w, b.String())
}

// usageError is a mistake in the command line: klagg exits 2 and points at -h.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// setUsage gives fs a usage text: the synopsis, what the command does, the flags.
func setUsage(fs *flag.FlagSet, synopsis, about string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\n", synopsis)
		if about != "" {
			fmt.Fprintf(fs.Output(), "%s\n\n", about)
		}
		fs.PrintDefaults()
	}
}

// parseFlags parses a command's arguments. Asked for help (-h, --help) it prints
// the usage on stdout and returns flag.ErrHelp; an unknown flag, a bad value or a
// positional argument (every command takes flags only) is a usageError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard) // the flag package would print its errors and the usage on stderr
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return flag.ErrHelp
	}
	fs.SetOutput(os.Stderr)
	if err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q: klagg %s takes flags only, and a list is one comma-separated value (--intervals 1m,5m)", fs.Arg(0), fs.Name())
	}
	return nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// splitTrimmed splits a comma-separated list, trimming the spaces around each item
// and dropping empty ones: "a.csv, b.csv" is two paths, as --symbols "A, B" is two
// symbols.
func splitTrimmed(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// attemptLog is an http.RoundTripper that remembers what the requests through it
// met, so `klagg run` stopped before the exchange ever answered can say what it
// tried: how many requests, to which URL, and the last failure.
type attemptLog struct {
	next http.RoundTripper

	mu       sync.Mutex
	attempts int
	url      string
	last     string // the last failure: a transport error or an HTTP status
}

// wrapHTTP returns a copy of c (nil: a default client) whose requests go through a.
func (a *attemptLog) wrapHTTP(c *http.Client) *http.Client {
	wrapped := &http.Client{}
	if c != nil {
		*wrapped = *c
	}
	a.next = wrapped.Transport
	if a.next == nil {
		a.next = http.DefaultTransport
	}
	wrapped.Transport = a
	return wrapped
}

// RoundTrip implements http.RoundTripper.
func (a *attemptLog) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.attempts++
	a.url = req.URL.Redacted()
	switch {
	case err != nil && req.Context().Err() == nil: // not the cancellation of a stop
		a.last = err.Error()
	case err == nil && resp.StatusCode >= 300:
		a.last = "HTTP " + resp.Status
	}
	return resp, err
}

// summary says what was tried, e.g. "3 requests to http://.../exchangeInfo, the last
// failure: dial tcp ...: connection refused".
func (a *attemptLog) summary() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.attempts == 0 {
		return "no request sent"
	}
	last := a.last
	if last == "" {
		last = "none (interrupted while waiting for a reply)"
	}
	plural := "s"
	if a.attempts == 1 {
		plural = ""
	}
	return fmt.Sprintf("%d request%s to %s, the last failure: %s", a.attempts, plural, a.url, last)
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
	level := zapcore.InfoLevel
	if debug {
		level = zapcore.DebugLevel
	}
	return buildLogger(level, false)
}

// buildLogger returns a sampled logger at level on stderr, console lines or JSON.
func buildLogger(level zapcore.Level, json bool) *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewConsoleEncoder(cfg.EncoderConfig)
	if json {
		enc = zapcore.NewJSONEncoder(cfg.EncoderConfig)
	}
	// On stderr through the console the progress bar shares; sampled as
	// zap's production logger is.
	out := zapcore.Lock(zapcore.AddSync(stderr.logs()))
	core := zapcore.NewCore(enc, out, zap.NewAtomicLevelAt(level))
	s := cfg.Sampling
	core = zapcore.NewSamplerWithOptions(core, time.Second, s.Initial, s.Thereafter)
	return zap.New(core, zap.AddCaller(), zap.ErrorOutput(out))
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
