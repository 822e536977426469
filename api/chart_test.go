package api

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/klagg/klagg/parse"
	"github.com/klagg/klagg/shard"
)

// chromium finds Debian's chromium (api/testdata/setup.sh installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Skip("chromium is not installed: run api/testdata/setup.sh for the chart page test")
	return ""
}

// countColor counts the pixels of img close to c (the candles' colours).
func countColor(img image.Image, r0, g0, b0 uint8) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			d := func(v uint32, w uint8) int { return int(v>>8) - int(w) }
			if abs(d(r, r0)) < 8 && abs(d(g, g0)) < 8 && abs(d(bl, b0)) < 8 {
				n++
			}
		}
	}
	return n
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// The chart page in headless Chromium: it loads, draws candles fed by the
// server's REST klines, and updates when a kline event is published.
func TestChartPage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium")
	}
	exe := chromium(t)
	s, hist := testServer(t, "futures", fastCadence)
	// A random walk, so the candles look like a market: both colours show.
	rng := rand.New(rand.NewPCG(1, 2))
	closed := make([]shard.Kline, 120)
	price := int64(30000_00000000)
	for i := range closed {
		k := mkKline(t, 0, 0, t0+int64(i)*minute, int64(i), true)
		o := price
		price += rng.Int64N(60_00000000) - 29_00000000
		hi, lo := max(o, price)+rng.Int64N(15_00000000), min(o, price)-rng.Int64N(15_00000000)
		k.Open, k.Close, k.High, k.Low = parse.Decimal(o), parse.Decimal(price), parse.Decimal(hi), parse.Decimal(lo)
		closed[i] = k
	}
	hist.Add("BTCUSDT", "1m", closed...)
	eth := fill(t, hist, 1, 3, 30) // ETHUSDT 90m, a custom interval
	open := mkKline(t, 0, 0, closed[len(closed)-1].OpenTime+minute, 900, false)
	s.Publish(&open)
	waitProcessed(t, s)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 720),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first action starts the browser: no timeout on its context (chromedp's rule).
	if err := chromedp.Do(ctx, chromedp.Navigate(s.httpURL("/?symbol=BTCUSDT&interval=1m"))); err != nil {
		t.Fatalf("cannot open the chart page: %v", err)
	}
	poll := func(what, expr string, d time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(d))); err != nil {
			state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.klagg)`))
			t.Fatalf("%s: %v (page state %s)", what, err, state)
		}
	}
	poll("the chart did not load its candles", `window.klagg && window.klagg.candles >= 121 && document.getElementById('conn').textContent === 'live'`, 60*time.Second)
	candles, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.klagg.candles`))
	if err != nil {
		t.Fatal(err)
	}
	if candles != 121 {
		t.Fatalf("%d candles drawn, want 121 (120 closed and the open one)", candles)
	}
	waitFor(t, 10*time.Second, "the page's subscription", func() bool { return s.Stats().Subscriptions == 1 })

	// A new kline event moves the chart on: the open kline closes and the next opens.
	final := mkKline(t, 0, 0, open.OpenTime, 901, true)
	next := mkKline(t, 0, 0, open.OpenTime+minute, 902, false)
	s.Publish(&final)
	s.Publish(&next)
	poll("the chart did not take the published klines",
		fmt.Sprintf(`window.klagg.lastOpenTime === %d && window.klagg.lastClose === %s && window.klagg.candles === 122`, next.OpenTime, next.Close.String()), 20*time.Second)
	poll("no status panel", `document.getElementById('status-list').textContent.includes('ws clients')`, 10*time.Second)
	if err := chromedp.Do(ctx, chromedp.Sleep(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	up, down := countColor(img, 0x26, 0xa6, 0x9a), countColor(img, 0xef, 0x53, 0x50)
	if up < 200 || down < 200 {
		t.Fatalf("the screenshot shows %d up-candle and %d down-candle pixels: candles not drawn", up, down)
	}
	dir := filepath.Join("testdata", "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, _ := filepath.Abs(filepath.Join(dir, "chart.png"))
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("chart screenshot (%d up, %d down candle pixels): %s", up, down, path)

	// Symbol search and interval switch: ETHUSDT on the custom 90m interval,
	// the stream switched with UNSUBSCRIBE and SUBSCRIBE.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`(() => {
		const input = document.getElementById('symbol');
		input.value = 'ethusdt';
		input.dispatchEvent(new Event('change'));
		document.querySelector('#intervals button[data-iv="90m"]').click();
	})()`)); err != nil {
		t.Fatal(err)
	}
	poll("the chart did not switch to ETHUSDT 90m", `window.klagg.symbol === 'ETHUSDT' && window.klagg.interval === '90m' && window.klagg.candles === 30`, 20*time.Second)
	waitFor(t, 10*time.Second, "the switched subscription", func() bool {
		st := s.lookup("ETHUSDT", "90m")
		if st == nil {
			return false
		}
		subs := st.subs.Load()
		return subs != nil && len(*subs) == 1 && s.Stats().Subscriptions == 1
	})
	ivs := testIntervals(t)
	ethNext := mkKline(t, 1, 3, ivs[3].NextOpen(eth[len(eth)-1].OpenTime), 950, false)
	s.Publish(&ethNext)
	poll("the 90m chart did not take the published kline", fmt.Sprintf(`window.klagg.lastOpenTime === %d && window.klagg.candles === 31`, ethNext.OpenTime), 20*time.Second)
}
