package api

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// FuzzKlinesQuery: the REST query parser never panics, every answer is
// either a Binance error or a query within bounds, and what it accepts
// agrees with net/url's reading of the same query.
func FuzzKlinesQuery(f *testing.F) {
	for _, s := range []string{
		"symbol=BTCUSDT&interval=1m", "symbol=BTCUSDT&interval=1m&limit=1500&startTime=0&endTime=9",
		"symbol=BTC%55SDT&interval=90m&startTime=99999999999999999999", "symbol=&interval=", "a=1&a=2",
		"symbol=BTCUSDT&interval=1m&timeZone=%2B00:00", "symbol=%zz", "&&&=&",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	served := func(s string) bool { return s == "1m" || s == "90m" }
	f.Fuzz(func(t *testing.T, raw string, spot bool) {
		q, e := parseKlinesQuery(raw, spot, 500, 1500, served)
		if e != nil {
			if e.Code >= 0 || e.Msg == "" || e.Status != 400 {
				t.Fatalf("bad error %+v", e)
			}
			var doc struct{ Code int }
			b := []byte(`{"code":` + itoa(e.Code) + `}`)
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			return
		}
		if !validSymbol(q.Symbol) || !served(q.Interval) || q.Limit < 1 || q.Limit > 1500 {
			t.Fatalf("accepted an out-of-bounds query %+v from %q", q, raw)
		}
		if (q.Start != Unset && q.Start < 0) || (q.End != Unset && q.End < 0) {
			t.Fatalf("negative time %+v", q)
		}
		v, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatalf("accepted %q, which net/url rejects: %v", raw, err)
		}
		if v.Get("symbol") != q.Symbol || v.Get("interval") != q.Interval {
			t.Fatalf("%q: parsed %+v, net/url reads %v", raw, q, v)
		}
	})
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// FuzzControl: a WebSocket control message never panics the parser, and
// every reply the server would send is valid JSON carrying a valid id.
func FuzzControl(f *testing.F) {
	for _, s := range []string{
		`{"method":"SUBSCRIBE","params":["btcusdt@kline_1m"],"id":1}`,
		`{"method":"UNSUBSCRIBE","params":["btcusdt@kline_1m"],"id":"a-b"}`,
		`{"method":"LIST_SUBSCRIPTIONS","id":null}`, `{"method":"SET_PROPERTY","params":["combined",true],"id":5}`,
		`{"method":"GET_PROPERTY","params":["combined"],"id":2}`, `{"method":1}`, `{"id":1e99}`, `[`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		req, reply := parseControl(msg, 1024)
		if reply == nil {
			reply = controlResult(nullID, req.ID)
			for _, n := range req.Streams {
				if sym, iv, ok := parseStreamName(n); ok {
					if !validSymbol(sym) || iv == "" || strings.ContainsAny(streamName(sym, iv), "\"\\") {
						t.Fatalf("stream name %q parsed to %q %q", n, sym, iv)
					}
				}
			}
		}
		var doc struct {
			ID json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(reply, &doc); err != nil {
			t.Fatalf("reply %q to %q is not JSON: %v", reply, msg, err)
		}
		if _, ok := canonicalID(doc.ID); !ok {
			t.Fatalf("reply %q carries an invalid id", reply)
		}
	})
}
