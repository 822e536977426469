package api

import (
	"context"
	"testing"
	"time"

	binance "github.com/adshao/go-binance/v2"
	"github.com/adshao/go-binance/v2/common"
	"github.com/adshao/go-binance/v2/futures"

	"github.com/klagg/klagg/shard"
)

// go-binance, a real Binance client library, pointed at klagg through its
// base URL variables: what it gets equals what History and Publish hold.
// go-binance keeps its WebSocket URLs in package variables, so these tests
// set and restore them and do not run in parallel.

// goBinanceRow is the fields both of go-binance's Kline types share.
type goBinanceRow struct {
	OpenTime, CloseTime, TradeNum                        int64
	Open, High, Low, Close, Volume                       string
	QuoteAssetVolume, TakerBuyBaseAssetVolume, TakerBuyQ string
}

func rowWant(k *shard.Kline) goBinanceRow {
	r := rowOf(k)
	return goBinanceRow{k.OpenTime, k.CloseTime, k.Count, r.Open, r.High, r.Low, r.Close, r.Volume, r.QuoteVolume, r.TakerBuy, r.TakerBuyQ}
}

func swap[T any](t *testing.T, p *T, v T) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

func TestGoBinanceFutures(t *testing.T) {
	s, hist := testServer(t, "futures", fastCadence)
	closed := fill(t, hist, 0, 0, 30)
	open := mkKline(t, 0, 0, closed[len(closed)-1].OpenTime+minute, 500, false)
	s.Publish(&open)
	waitProcessed(t, s)
	want := append(append([]shard.Kline{}, closed...), open)

	client := futures.NewClient("", "")
	client.BaseURL = s.httpURL("")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := client.NewKlinesService().Symbol("BTCUSDT").Interval("1m").Limit(20).Do(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("%d klines, want 20", len(got))
	}
	for i, g := range got {
		w := rowWant(&want[len(want)-20+i])
		have := goBinanceRow{g.OpenTime, g.CloseTime, g.TradeNum, g.Open, g.High, g.Low, g.Close, g.Volume, g.QuoteAssetVolume, g.TakerBuyBaseAssetVolume, g.TakerBuyQuoteAssetVolume}
		if have != w {
			t.Fatalf("kline %d: go-binance got %+v, want %+v", i, have, w)
		}
	}
	info, err := client.NewExchangeInfoService().Do(ctx)
	if err != nil || len(info.Symbols) != len(testSymbols) || info.Symbols[0].Symbol != "BTCUSDT" || info.Symbols[0].QuoteAsset != "USDT" {
		t.Fatalf("exchangeInfo through go-binance: %v %+v", err, info)
	}
	if err := client.NewPingService().Do(ctx); err != nil {
		t.Fatal(err)
	}
	// Binance's errors reach go-binance as APIError.
	_, err = client.NewKlinesService().Symbol("NOPE").Interval("1m").Do(ctx)
	if apiErr, ok := err.(*common.APIError); !ok || apiErr.Code != -1121 {
		t.Fatalf("unknown symbol: %v", err)
	}

	swap(t, &futures.BaseWsMainUrl, s.wsURL("/ws"))
	swap(t, &futures.BaseCombinedMainURL, s.wsURL("/stream?streams="))
	events := make(chan *futures.WsKlineEvent, 16)
	errs := make(chan error, 4)
	done, stop, err := futures.WsKlineServe("BTCUSDT", "1m", func(e *futures.WsKlineEvent) { events <- e }, func(err error) { errs <- err })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(stop); <-done }()
	combinedEvents := make(chan *futures.WsKlineEvent, 16)
	done2, stop2, err := futures.WsCombinedKlineServe(map[string]string{"ETHUSDT": "90m"}, func(e *futures.WsKlineEvent) { combinedEvents <- e }, func(err error) { errs <- err })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(stop2); <-done2 }()
	waitFor(t, 5*time.Second, "go-binance's subscriptions", func() bool { return s.Stats().Subscriptions == 2 })

	update := mkKline(t, 0, 0, open.OpenTime, 501, false)
	final := mkKline(t, 0, 0, open.OpenTime, 502, true)
	ivs := testIntervals(t)
	eth := mkKline(t, 1, 3, ivs[3].OpenTime(t0), 7, true)
	check := func(ch chan *futures.WsKlineEvent, k *shard.Kline, sym, iv string) {
		t.Helper()
		select {
		case e := <-ch:
			w := rowWant(k)
			g := e.Kline
			have := goBinanceRow{g.StartTime, g.EndTime, g.TradeNum, g.Open, g.High, g.Low, g.Close, g.Volume, g.QuoteVolume, g.ActiveBuyVolume, g.ActiveBuyQuoteVolume}
			if e.Event != "kline" || e.Symbol != sym || g.Symbol != sym || g.Interval != iv || g.IsFinal != k.Closed ||
				g.FirstTradeID != k.FirstTradeID || g.LastTradeID != k.LastTradeID || have != w {
				t.Fatalf("go-binance event %+v, want %+v", e, w)
			}
		case err := <-errs:
			t.Fatalf("go-binance error: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("go-binance received no kline event")
		}
	}
	// An update still waiting for its cadence slot is superseded by the close:
	// wait for it before closing.
	s.Publish(&update)
	check(events, &update, "BTCUSDT", "1m")
	s.Publish(&final)
	s.Publish(&eth)
	check(events, &final, "BTCUSDT", "1m")
	check(combinedEvents, &eth, "ETHUSDT", "90m")
}

func TestGoBinanceSpot(t *testing.T) {
	s, hist := testServer(t, "spot", fastCadence)
	closed := fill(t, hist, 2, 1, 12) // SOLUSDT 2m, a custom interval
	ivs := testIntervals(t)
	open := mkKline(t, 2, 1, ivs[1].NextOpen(closed[len(closed)-1].OpenTime), 600, false)
	s.Publish(&open)
	waitProcessed(t, s)
	want := append(append([]shard.Kline{}, closed...), open)

	client := binance.NewClient("", "")
	client.BaseURL = s.httpURL("")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := client.NewKlinesService().Symbol("SOLUSDT").Interval("2m").StartTime(closed[2].OpenTime).Do(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)-2 {
		t.Fatalf("%d klines, want %d", len(got), len(want)-2)
	}
	for i, g := range got {
		w := rowWant(&want[2+i])
		have := goBinanceRow{g.OpenTime, g.CloseTime, g.TradeNum, g.Open, g.High, g.Low, g.Close, g.Volume, g.QuoteAssetVolume, g.TakerBuyBaseAssetVolume, g.TakerBuyQuoteAssetVolume}
		if have != w {
			t.Fatalf("kline %d: go-binance got %+v, want %+v", i, have, w)
		}
	}

	info, err := client.NewExchangeInfoService().Do(ctx)
	if err != nil || len(info.Symbols) != len(testSymbols) || info.Symbols[2].Symbol != "SOLUSDT" || info.Symbols[2].BaseAsset != "SOL" {
		t.Fatalf("exchangeInfo through go-binance: %v %+v", err, info)
	}
	serverTime, err := client.NewServerTimeService().Do(ctx)
	if err != nil || serverTime <= 0 {
		t.Fatalf("server time through go-binance: %d %v", serverTime, err)
	}

	swap(t, &binance.BaseWsMainURL, s.wsURL("/ws"))
	swap(t, &binance.BaseCombinedMainURL, s.wsURL("/stream?streams="))
	events := make(chan *binance.WsKlineEvent, 16)
	errs := make(chan error, 4)
	done, stop, err := binance.WsKlineServe("SOLUSDT", "2m", func(e *binance.WsKlineEvent) { events <- e }, func(err error) { errs <- err })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { close(stop); <-done }()
	waitFor(t, 5*time.Second, "go-binance's subscription", func() bool { return s.Stats().Subscriptions == 1 })
	final := mkKline(t, 2, 1, open.OpenTime, 601, true)
	s.Publish(&final)
	select {
	case e := <-events:
		g := e.Kline
		w := rowWant(&final)
		have := goBinanceRow{g.StartTime, g.EndTime, g.TradeNum, g.Open, g.High, g.Low, g.Close, g.Volume, g.QuoteVolume, g.ActiveBuyVolume, g.ActiveBuyQuoteVolume}
		if !g.IsFinal || g.Interval != "2m" || e.Symbol != "SOLUSDT" || have != w {
			t.Fatalf("go-binance event %+v, want %+v", e, w)
		}
	case err := <-errs:
		t.Fatalf("go-binance error: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("go-binance received no kline event")
	}
}
