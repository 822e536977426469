package exchange

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"testing"
	"time"
)

func TestMarket(t *testing.T) {
	for _, m := range []Market{Futures, Spot} {
		got, err := ParseMarket(m.String())
		if err != nil || got != m {
			t.Errorf("ParseMarket(%q) = %v, %v", m.String(), got, err)
		}
	}
	if m, err := ParseMarket("SPOT"); err != nil || m != Spot {
		t.Errorf("ParseMarket(SPOT) = %v, %v", m, err)
	}
	if _, err := ParseMarket("margin"); !errors.Is(err, ErrUnknownMarket) {
		t.Errorf("ParseMarket(margin) error = %v, want ErrUnknownMarket", err)
	}
	if s := Market(7).String(); s != "Market(7)" {
		t.Errorf("Market(7).String() = %q", s)
	}
}

func TestURLs(t *testing.T) {
	f, s := DefaultEndpoints(Futures), DefaultEndpoints(Spot)
	if f.WS != "wss://fstream.binance.com" || f.REST != "https://fapi.binance.com" {
		t.Errorf("futures endpoints %+v", f)
	}
	if s.WS != "wss://stream.binance.com:9443" || s.REST != "https://api.binance.com" {
		t.Errorf("spot endpoints %+v", s)
	}
	if got := StreamName("BTCUSDT"); got != "btcusdt@aggTrade" {
		t.Errorf("StreamName = %q", got)
	}
	streams := []string{StreamName("BTCUSDT"), StreamName("ETHUSDT")}
	tests := []struct{ got, want string }{
		{CombinedURL(Futures, f.WS, streams), "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"},
		{CombinedURL(Spot, s.WS+"/", streams), "wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"},
		{RawURL(Futures, "ws://127.0.0.1:1234"), "ws://127.0.0.1:1234/market/ws"},
		{RawURL(Spot, s.WS), "wss://stream.binance.com:9443/ws"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestDefaultLimits(t *testing.T) {
	f, s := DefaultLimits(Futures), DefaultLimits(Spot)
	if f.MaxStreamsPerConn != 200 || f.MessagesPerSecond != 10 || f.WeightPerMinute != 2400 || f.MaxConnAge != 23*time.Hour+30*time.Minute {
		t.Errorf("futures limits %+v", f)
	}
	if s.MaxStreamsPerConn != 1024 || s.MessagesPerSecond != 5 || s.WeightPerMinute != 6000 || s.MaxConnAge >= 24*time.Hour {
		t.Errorf("spot limits %+v", s)
	}
}

func TestSubscribeMessage(t *testing.T) {
	got := SubscribeMessage([]byte("x"), "SUBSCRIBE", 7, []string{"btcusdt@aggTrade", "ethusdt@aggTrade"})
	want := `x{"method":"SUBSCRIBE","params":["btcusdt@aggTrade","ethusdt@aggTrade"],"id":7}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got = SubscribeMessage(nil, "UNSUBSCRIBE", -1, nil)
	if want := `{"method":"UNSUBSCRIBE","params":[],"id":-1}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// Escaping: whatever the strings, the message is valid JSON carrying them.
	odd := []string{`a"b`, `c\d`, "e\x01f", "ü"}
	var m struct {
		Method string   `json:"method"`
		Params []string `json:"params"`
		ID     int64    `json:"id"`
	}
	if err := json.Unmarshal(SubscribeMessage(nil, "SUB\"X", 1<<40, odd), &m); err != nil {
		t.Fatal(err)
	}
	if m.Method != "SUB\"X" || !slices.Equal(m.Params, odd) || m.ID != 1<<40 {
		t.Errorf("round trip %+v", m)
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		frame   string
		id      int64
		code    int
		msg     string
		isReply bool
	}{
		{`{"result":null,"id":1}`, 1, 0, "", true},
		{`{"id":42,"result":null}`, 42, 0, "", true},
		{`{"result":["btcusdt@aggTrade"],"id":3}`, 3, 0, "", true},
		{`{"error":{"code":2,"msg":"Invalid request: unknown variant"},"id":5}`, 5, 2, "Invalid request: unknown variant", true},
		{`{"error":{"code":3,"msg":"Invalid JSON"},"id":null}`, 0, 3, "Invalid JSON", true},
		{`{"e":"aggTrade","E":1,"s":"BTCUSDT","a":5,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}`, 0, 0, "", false},
		{`{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","a":1}}`, 0, 0, "", false},
		{`{"id":1}`, 0, 0, "", false},
		{`{"result":null}`, 0, 0, "", false},
		{`{"result":null,"id":`, 0, 0, "", false},
		{``, 0, 0, "", false},
	}
	for _, tt := range tests {
		id, code, msg, ok := ParseReply([]byte(tt.frame))
		if id != tt.id || code != tt.code || msg != tt.msg || ok != tt.isReply {
			t.Errorf("ParseReply(%s) = %d, %d, %q, %v; want %d, %d, %q, %v", tt.frame, id, code, msg, ok, tt.id, tt.code, tt.msg, tt.isReply)
		}
	}
}

func TestIsServerShutdown(t *testing.T) {
	tests := []struct {
		frame string
		want  bool
	}{
		{`{"e":"serverShutdown","E":1719000000000}`, true},
		{`{"E":1719000000000,"e":"serverShutdown"}`, true},
		{`{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1719000000000}}`, true},
		{`{"stream":"!serverShutdown","data":{}}`, true},
		{`{"e":"aggTrade","E":1,"s":"BTCUSDT"}`, false},
		{`{"e":"kline","note":"serverShutdown"}`, false},
		{`serverShutdown`, false},
		{`{"result":null,"id":1}`, false},
	}
	for _, tt := range tests {
		if got := IsServerShutdown([]byte(tt.frame)); got != tt.want {
			t.Errorf("IsServerShutdown(%s) = %v, want %v", tt.frame, got, tt.want)
		}
	}
}

// TestRecordedFramesAreNotControl runs ParseReply and IsServerShutdown over
// real stream recordings: no market-data frame is a reply or a shutdown.
func TestRecordedFramesAreNotControl(t *testing.T) {
	for _, name := range []string{"futures-ws-2021-07-22.ndjson", "spot-ws-2021-10-12.ndjson"} {
		f, err := os.Open(sharedData(t, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		n := 0
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			n++
			if _, _, _, ok := ParseReply(line); ok {
				t.Errorf("%s: frame taken for a reply: %.100s", name, line)
			}
			if IsServerShutdown(line) {
				t.Errorf("%s: frame taken for a shutdown: %.100s", name, line)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil || n == 0 {
			t.Fatalf("%s: %d frames, %v", name, n, err)
		}
	}
}
