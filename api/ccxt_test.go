package api

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/klagg/klagg/shard"
)

// ccxtDir holds the ccxt test client and its lockfile.
const ccxtDir = "testdata/ccxt"

// setupCCXT installs ccxt from the committed lockfile (npm ci) unless the
// locked version is installed already; it skips when node or npm is absent.
func setupCCXT(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the ccxt client test needs node and npm (api/testdata/setup.sh)", tool)
		}
	}
	var lock struct {
		Packages map[string]struct{ Version string } `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(ccxtDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatal(err)
	}
	want := lock.Packages["node_modules/ccxt"].Version
	var have struct{ Version string }
	if b, err := os.ReadFile(filepath.Join(ccxtDir, "node_modules/ccxt/package.json")); err == nil {
		_ = json.Unmarshal(b, &have)
	}
	if have.Version == want {
		return
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = ccxtDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", ccxtDir, err, out)
	}
}

// ccxtLine is one line of client.mjs's output.
type ccxtLine struct {
	Fetch  [][]float64 `json:"fetch"`
	Watch  [][]float64 `json:"watch"`
	Market string      `json:"market"`
	Error  string      `json:"error"`
}

func ohlcv(k *shard.Kline) []float64 {
	f := func(s string) float64 {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			panic(err)
		}
		return v
	}
	r := rowOf(k)
	return []float64{float64(k.OpenTime), f(r.Open), f(r.High), f(r.Low), f(r.Close), f(r.Volume)}
}

func sameCandle(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCCXT(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node")
	}
	setupCCXT(t)
	for _, c := range []struct {
		market, id, symbol, interval string
		sym, iv                      int
	}{
		{"futures", "binanceusdm", "BTC/USDT:USDT", "1m", 0, 0},
		{"spot", "binance", "ETH/USDT", "5m", 1, 2},
	} {
		t.Run(c.id, func(t *testing.T) {
			s, hist := testServer(t, c.market, func(cfg *Config) { fastCadence(cfg); cfg.Log = zaptest.NewLogger(t) })
			closed := fill(t, hist, c.sym, c.iv, 40)
			ivs := testIntervals(t)
			open := mkKline(t, c.sym, c.iv, ivs[c.iv].NextOpen(closed[len(closed)-1].OpenTime), 700, false)
			s.Publish(&open)
			waitProcessed(t, s)
			want := append(append([]shard.Kline{}, closed...), open)

			cmd := exec.Command("node", "client.mjs", c.id, c.symbol, c.interval, "10")
			cmd.Dir = ccxtDir
			cmd.Env = append(os.Environ(), "KLAGG_HTTP="+s.httpURL(""), "KLAGG_WS="+s.wsURL(""))
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				stdin.Close()
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
			}()
			lines := make(chan ccxtLine)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(stdout)
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					var l ccxtLine
					if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
						l.Error = "bad line: " + sc.Text()
					}
					lines <- l
				}
				_, _ = io.Copy(io.Discard, stdout)
			}()
			next := func() ccxtLine {
				t.Helper()
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatal("ccxt client exited")
					}
					if l.Error != "" {
						t.Fatalf("ccxt: %s", l.Error)
					}
					return l
				case <-time.After(30 * time.Second):
					t.Fatal("ccxt client timed out")
				}
				return ccxtLine{}
			}
			l := next()
			if len(l.Fetch) != 10 {
				t.Fatalf("fetchOHLCV returned %d candles, want 10", len(l.Fetch))
			}
			for i, got := range l.Fetch {
				if w := ohlcv(&want[len(want)-10+i]); !sameCandle(got, w) {
					t.Fatalf("fetchOHLCV candle %d = %v, want %v", i, got, w)
				}
			}
			for deadline := time.Now().Add(30 * time.Second); s.Stats().Subscriptions != 1; {
				select {
				case l, ok := <-lines:
					if !ok || l.Error != "" {
						t.Fatalf("ccxt failed before it subscribed: %s", l.Error)
					}
				case <-time.After(10 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatal("ccxt did not subscribe within 30 s")
				}
			}
			update := mkKline(t, c.sym, c.iv, open.OpenTime, 701, false)
			s.Publish(&update)
			final := mkKline(t, c.sym, c.iv, open.OpenTime, 702, true)
			following := mkKline(t, c.sym, c.iv, ivs[c.iv].NextOpen(open.OpenTime), 703, false)
			for _, k := range []*shard.Kline{&update, &final, &following} {
				if k != &update {
					s.Publish(k)
				}
				for {
					l := next()
					if len(l.Watch) > 0 && sameCandle(l.Watch[len(l.Watch)-1], ohlcv(k)) {
						break
					}
				}
			}
			waitFor(t, 5*time.Second, "three frames counted", func() bool { return s.Stats().FramesSent >= 3 })
		})
	}
}
