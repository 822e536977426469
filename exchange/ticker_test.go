package exchange

import (
	"context"
	"net/http"
	"testing"
)

func TestLastTrades(t *testing.T) {
	for _, m := range []Market{Futures, Spot} {
		t.Run(m.String(), func(t *testing.T) {
			var path string
			c, _ := testClient(t, m, func(w http.ResponseWriter, r *http.Request) {
				path = r.URL.Path + "?" + r.URL.RawQuery
				// Binance's shape, trimmed: lastId is a raw trade id, -1 when the
				// symbol did not trade in 24 h.
				w.Write([]byte(`[{"symbol":"BTCUSDT","priceChange":"-94.99","lastId":28460,"firstId":28385,"count":76,"closeTime":1700000000123},` +
					`{"symbol":"IDLEUSDT","lastId":-1,"firstId":-1,"count":0,"closeTime":1700000000000},{"symbol":"NOID"}]`))
			})
			got, err := c.LastTrades(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]LastTrade{"BTCUSDT": {28460, 1700000000123}, "IDLEUSDT": {-1, 1700000000000}}
			if len(got) != len(want) || got["BTCUSDT"] != want["BTCUSDT"] || got["IDLEUSDT"] != want["IDLEUSDT"] {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			wantPath := "/fapi/v1/ticker/24hr?"
			if m == Spot {
				wantPath = "/api/v3/ticker/24hr?"
			}
			if path != wantPath {
				t.Fatalf("path %q, want %q (one request for every symbol)", path, wantPath)
			}
			if w := WeightLastTrades(m); (m == Futures && w != 40) || (m == Spot && w != 80) {
				t.Fatalf("weight %d", w)
			}
		})
	}
}

func TestLastTradesBadBody(t *testing.T) {
	c, _ := testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"code":0}`))
	})
	if _, err := c.LastTrades(context.Background()); err == nil {
		t.Fatal("an object instead of the ticker array was accepted")
	}
}

func TestAggTradesSince(t *testing.T) {
	var query string
	c, _ := testClient(t, Futures, func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		w.Write([]byte(`[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true}]`))
	})
	trades, err := c.AggTradesSince(context.Background(), "BTCUSDT", 7, 1498793709000, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(trades) != 1 || trades[0].AggID != 26129 || trades[0].Symbol != 7 || trades[0].TradeTime != 1498793709153 {
		t.Fatalf("trades %+v", trades)
	}
	if query != "limit=1000&startTime=1498793709000&symbol=BTCUSDT" {
		t.Fatalf("query %q", query)
	}
	for _, bad := range []struct {
		start int64
		limit int
	}{{-1, 10}, {0, 0}, {0, 1001}} {
		if _, err := c.AggTradesSince(context.Background(), "BTCUSDT", 7, bad.start, bad.limit, nil); err == nil {
			t.Errorf("start %d limit %d accepted", bad.start, bad.limit)
		}
	}
}
