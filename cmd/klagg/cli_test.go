package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the tests run the real command: the test binary started with
// KLAGG_TEST_MAIN=1 is klagg, so exit statuses and signals are checked end to end.
func TestMain(m *testing.M) {
	if os.Getenv("KLAGG_TEST_MAIN") == "1" {
		main()
		os.Exit(0) // main exits itself
	}
	os.Exit(m.Run())
}

// lockedBuffer is a bytes.Buffer a test may read while the command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// klaggCommand returns the command running klagg with args, output captured.
func klaggCommand(ctx context.Context, args ...string) (*exec.Cmd, *lockedBuffer, *lockedBuffer) {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	// Under -race a process exiting 0 sleeps 1 s for late reports; not needed here.
	cmd.Env = append(os.Environ(), "KLAGG_TEST_MAIN=1", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// exitCode returns the exit status of a command that has run.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.Exited():
		return exit.ExitCode()
	}
	t.Fatalf("klagg did not exit by itself: %v", err)
	return -1
}

// klagg runs the command with args to its end.
func klagg(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, stdout, stderr := klaggCommand(ctx, args...)
	code := exitCode(t, cmd.Run())
	return cliResult{code, stdout.String(), stderr.String()}
}

// TestCLIHelp checks that every way of asking for help succeeds and prints the
// usage on stdout: `klagg -h` and `klagg CMD -h` used to exit 2, and demo, bench and
// capacity printed Go's generic "Usage of demo:".
func TestCLIHelp(t *testing.T) {
	type helpCase struct {
		args []string
		want string // the start of stdout
	}
	cases := []helpCase{
		{[]string{"-h"}, "usage: klagg <command>"},
		{[]string{"--help"}, "usage: klagg <command>"},
		{[]string{"help"}, "usage: klagg <command>"},
		{[]string{"help", "replay"}, "usage: klagg replay "},
	}
	for _, c := range commands {
		for _, h := range []string{"-h", "--help", "-help"} {
			cases = append(cases, helpCase{[]string{c.name, h}, "usage: klagg " + c.name + " "})
		}
	}
	for _, tc := range cases {
		r := klagg(t, tc.args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, tc.want) || r.stderr != "" {
			t.Errorf("klagg %s: exit %d, stdout %.80q, stderr %.80q; want exit 0 and stdout starting %q",
				strings.Join(tc.args, " "), r.code, r.stdout, r.stderr, tc.want)
		}
		if len(tc.args) == 2 && tc.args[0] != "help" {
			if !strings.Contains(r.stdout, "\n  -") || strings.Contains(r.stdout, "Usage of") {
				t.Errorf("klagg %s lists no flags:\n%s", strings.Join(tc.args, " "), r.stdout)
			}
		}
	}
	// No command at all is a mistake, not a request for help.
	if r := klagg(t); r.code != 2 || r.stdout != "" || !strings.HasPrefix(r.stderr, "usage: klagg") {
		t.Errorf("klagg: exit %d, stdout %.80q, stderr %.80q; want exit 2 and the usage on stderr", r.code, r.stdout, r.stderr)
	}
	if r := klagg(t, "nope"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "nope"`) {
		t.Errorf("klagg nope: exit %d, stderr %.80q", r.code, r.stderr)
	}
}

// writeTrades writes a small aggTrades CSV per day for symbol into dir, named as
// data.binance.vision names them, with consecutive aggTrade ids across the days.
func writeTrades(t *testing.T, dir, symbol string, days ...string) []string {
	t.Helper()
	var paths []string
	id := int64(1000)
	for _, day := range days {
		ts, err := time.Parse("2006-01-02", day)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i := range 3 {
			ms := ts.Add(time.Duration(i) * 20 * time.Minute).UnixMilli()
			fmt.Fprintf(&b, "%d,1.2%d,3.5,%d,%d,%d,True,True\n", id, i, id*2, id*2, ms)
			id++
		}
		path := filepath.Join(dir, symbol+"-aggTrades-"+day+".csv")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// TestCLIMistakes checks that mistakes fail with a clear message and a non-zero
// exit, before any output directory is created or summary printed, and before
// `klagg run` touches the network. Each of them used to succeed, or to fail only
// after creating the output directory.
func TestCLIMistakes(t *testing.T) {
	dir := t.TempDir()
	csv := writeTrades(t, dir, "BTCUSDT", "2024-01-01")[0]
	txt := filepath.Join(dir, "BTCUSDT-aggTrades-2024-01-02.txt")
	data, err := os.ReadFile(csv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(txt, data, 0o644); err != nil {
		t.Fatal(err)
	}
	asFrames := filepath.Join(dir, "capture.ndjson")
	if err := os.WriteFile(asFrames, data, 0o644); err != nil {
		t.Fatal(err)
	}
	inputDir := filepath.Join(dir, "days.csv")
	if err := os.Mkdir(inputDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int64
	rest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "the test exchange is closed", http.StatusServiceUnavailable)
	}))
	defer rest.Close()
	ws := "ws" + strings.TrimPrefix(rest.URL, "http")

	out := filepath.Join(dir, "out")
	replay := func(extra ...string) []string {
		return append([]string{"replay", "--input", csv, "--out-dir", out, "--intervals", "1m"}, extra...)
	}
	demo := func(extra ...string) []string {
		return append([]string{"demo", "--symbols", "2", "--trades", "100", "--out-dir", out}, extra...)
	}
	run := func(extra ...string) []string {
		return append([]string{"run", "--rest-url", rest.URL, "--ws-url", ws, "--out-dir", out, "--db", filepath.Join(dir, "k.db")}, extra...)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{replay("extra.csv"), 2, `unexpected argument "extra.csv"`},
		{demo("x"), 2, `unexpected argument "x"`},
		{[]string{"bench", "--duration", "1ms", "x"}, 2, `unexpected argument "x"`},
		{[]string{"capacity", "--duration", "1ms", "x"}, 2, `unexpected argument "x"`},
		{run("x"), 2, `unexpected argument "x"`},
		{replay("--nope"), 2, "flag provided but not defined: -nope"},
		{replay("--intervals", ""), 2, "--intervals is empty"},
		{replay("--intervals", " , "), 2, "empty item"},
		{replay("--shards", "0"), 2, "--shards 0"},
		{replay("--shards", "1025"), 2, "--shards 1025"},
		{replay("--grace", "-1s"), 2, "--grace -1s"},
		{replay("--market", "options"), 2, `unknown --market "options"`},
		{replay("--cpus", "100000"), 2, "CPU 100000 is not one klagg may run on"},
		{replay("--cpus", "0,x"), 2, `bad CPU "x"`},
		{[]string{"replay", "--input", txt, "--out-dir", out}, 1, "cannot tell the format from the file name"},
		{[]string{"replay", "--input", asFrames, "--out-dir", out}, 1, "content does not match"},
		{[]string{"replay", "--input", inputDir, "--out-dir", out}, 1, "is a directory"},
		{[]string{"replay", "--input", filepath.Join(dir, "missing.csv"), "--out-dir", out}, 1, "no such file"},
		{[]string{"replay", "--input", " , ", "--out-dir", out}, 2, "--input and --out-dir are required"},
		{[]string{"replay", "--input", csv + "," + csv, "--out-dir", out}, 1, "given twice"},
		{demo("--symbols", "0"), 2, "--symbols 0"},
		{demo("--symbols", "-3"), 2, "--symbols -3"},
		{demo("--trades", "0"), 2, "--trades 0"},
		{demo("--rate", "0"), 2, "--rate 0"},
		{demo("--shards", "0"), 2, "--shards 0"},
		{[]string{"bench", "--symbols", "0"}, 2, "--symbols 0"},
		{[]string{"bench", "--shards", "0"}, 2, "--shards 0"},
		{[]string{"bench", "--procs", "-1"}, 2, "--procs -1"},
		{[]string{"capacity", "--rates", ""}, 2, "--rates is empty"},
		{[]string{"capacity", "--rates", "1000,-5"}, 2, `bad rate "-5"`},
		{[]string{"capacity", "--conns", "0"}, 2, "--conns 0"},
		{run("--shards", "0"), 2, "--shards 0"},
		{run("--intervals", ""), 2, "--intervals is empty"},
		{run("--cpus", "100000"), 2, "CPU 100000"},
		{run("--streams-per-conn", "201"), 2, "--streams-per-conn 201"},
		{run("--conns", "-1"), 2, "--conns -1"},
		{run("--refresh", "0s"), 2, "--refresh 0s"},
		{run("--stale", "0s"), 2, "--stale 0s"},
		{run("--rotate", "25h"), 2, "--rotate 25h0m0s"},
		{run("--rest-url", "127.0.0.1:9"), 2, `--rest-url "127.0.0.1:9"`},
		{run("--ws-url", "http://127.0.0.1:9"), 2, `--ws-url "http://127.0.0.1:9"`},
	} {
		name := "klagg " + strings.Join(tc.args, " ")
		r := klagg(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", name, r.code, r.stderr, tc.code, tc.want)
		}
		if r.code == 2 && !strings.Contains(r.stderr, "for its flags") {
			t.Errorf("%s: a usage mistake does not point at -h: %q", name, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("%s: printed on stdout:\n%s", name, r.stdout)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: created the output directory", name)
			os.RemoveAll(out)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("klagg run sent %d requests before rejecting its flags", n)
	}
}

// TestCLIReplayLists checks that spaces around the items of --input are trimmed
// as they are for --symbols, and that a symbol's day files given out of order are
// read by date: no trade is a duplicate.
func TestCLIReplayLists(t *testing.T) {
	dir := t.TempDir()
	days := writeTrades(t, dir, "BTCUSDT", "2024-01-01", "2024-01-02", "2024-01-03")
	want := filepath.Join(dir, "want")
	if r := klagg(t, "replay", "--input", strings.Join(days, ","), "--out-dir", want, "--intervals", "1h,1d"); r.code != 0 {
		t.Fatalf("in order: exit %d: %s", r.code, r.stderr)
	}
	got := filepath.Join(dir, "got")
	r := klagg(t, "replay", "--input", " "+days[2]+" , "+days[0]+",  "+days[1]+" ,", "--out-dir", got, "--intervals", "1h,1d")
	if r.code != 0 || !strings.Contains(r.stdout, "trades      9 routed = 9 applied") || !strings.Contains(r.stdout, " + 0 duplicates") {
		t.Fatalf("out of order, spaced: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, iv := range []string{"1h", "1d"} {
		a, errA := os.ReadFile(filepath.Join(want, "BTCUSDT-"+iv+".csv"))
		b, errB := os.ReadFile(filepath.Join(got, "BTCUSDT-"+iv+".csv"))
		if errA != nil || errB != nil || !bytes.Equal(a, b) || bytes.Count(a, []byte("\n")) < 3 {
			t.Errorf("%s: out of order gives\n%s\nin order\n%s(%v, %v)", iv, b, a, errA, errB)
		}
	}
}

// TestCLIReplayNoTrades checks that an input without a single aggTrade is not a
// silent success: klagg replay warns.
func TestCLIReplayNoTrades(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "book.ndjson")
	frame := `{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}`
	if err := os.WriteFile(path, []byte(frame+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := klagg(t, "replay", "--input", path, "--out-dir", filepath.Join(dir, "out"), "--intervals", "1m")
	if r.code != 0 || !strings.Contains(r.stderr, "warning: the input holds no aggTrade") {
		t.Fatalf("exit %d, stderr %q; want exit 0 and a warning", r.code, r.stderr)
	}
}

// TestCLIRunInterruptedOffline starts `klagg run` against a closed loopback port,
// as `make run` offline, and stops it with SIGINT or SIGTERM: it must exit 0 and
// say what it tried (it used to exit 1 with "context canceled").
func TestCLIRunInterruptedOffline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: every request is refused
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dir := t.TempDir()
			cmd, stdout, stderr := klaggCommand(ctx, "run", "--rest-url", "http://"+addr, "--ws-url", "ws://"+addr,
				"--out-dir", filepath.Join(dir, "live"), "--db", filepath.Join(dir, "k.db"), "--listen", "127.0.0.1:0")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Interrupt once a failed attempt is logged (or after a while, should the
			// log say it otherwise): the stop must come while the universe is unread.
			for wait := time.Now(); !strings.Contains(stderr.String(), "symbol universe") && time.Since(wait) < 10*time.Second; {
				time.Sleep(20 * time.Millisecond)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			code := exitCode(t, cmd.Wait())
			got := stdout.String()
			for _, want := range []string{"before the symbol universe could be read", "http://" + addr + "/", "connection refused"} {
				if !strings.Contains(got, want) {
					t.Errorf("stdout lacks %q:\n%s", want, got)
				}
			}
			if code != 0 || !regexp.MustCompile(`universe +[1-9][0-9]* requests? to `).MatchString(got) {
				t.Errorf("exit %d, stdout %q; want exit 0 and the number of requests\nstderr:\n%s", code, got, stderr.String())
			}
			if strings.Contains(stderr.String(), "context canceled") {
				t.Errorf("a stop reads as a failure:\n%s", stderr.String())
			}
		})
	}
}

func TestParseCPUList(t *testing.T) {
	for list, want := range map[string][]int{"0": {0}, "0-1": {0, 1}, "0,2-4,7": {0, 2, 3, 4, 7}} {
		if got, err := parseCPUList(list); err != nil || !slices.Equal(got, want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v", list, got, err, want)
		}
	}
	for _, bad := range []string{"", "a", "3-1", "1-", "0,,1"} {
		if got, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) = %v, want an error", bad, got)
		}
	}
	cpus, desc := availableCPUs()
	if len(cpus) == 0 || desc == "" {
		t.Fatalf("availableCPUs() = %v, %q", cpus, desc)
	}
}
