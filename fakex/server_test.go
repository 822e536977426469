package fakex

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestCombinedStreamDeliversItsTradesInOrder(t *testing.T) {
	for _, market := range []string{"futures", "spot"} {
		t.Run("market="+market, func(t *testing.T) {
			s := startServer(t, synthetic(market))
			path := "/market/stream?streams="
			if market == "spot" {
				path = "/stream?streams="
			}
			c := dial(t, s.WSURL()+path+"s0000usdt@aggTrade/s0002usdt@aggTrade/nosuch@aggTrade")
			next := map[string]int64{}
			for range 300 {
				e := decodeEvent(t, c.text())
				if e.Symbol != "S0000USDT" && e.Symbol != "S0002USDT" {
					t.Fatalf("symbol %s was not subscribed", e.Symbol)
				}
				if e.Stream != strings.ToLower(e.Symbol)+"@aggTrade" || e.Type != "aggTrade" {
					t.Fatalf("bad envelope %+v", e)
				}
				if (e.Best != nil) != (market == "spot") {
					t.Fatalf("M field presence wrong for %s: %+v", market, e)
				}
				if want, ok := next[e.Symbol]; ok && e.AggID != want {
					t.Fatalf("%s: id %d, want %d", e.Symbol, e.AggID, want)
				}
				if _, ok := next[e.Symbol]; !ok {
					if first := s.Produced()[e.Symbol].First; e.AggID != first {
						t.Fatalf("%s: first id %d, server's first %d", e.Symbol, e.AggID, first)
					}
				}
				next[e.Symbol] = e.AggID + 1
			}
			if len(next) != 2 {
				t.Fatalf("got symbols %v, want both", next)
			}
		})
	}
}

func TestRawSubscribeListUnsubscribe(t *testing.T) {
	s := startServer(t, synthetic("futures"))
	c := dial(t, s.WSURL()+"/market/ws")
	c.sendJSON(`{"method":"SUBSCRIBE","params":["s0001usdt@aggTrade","s0003usdt@aggTrade"],"id":7}`)
	if got := string(c.text()); got != `{"result":null,"id":7}` {
		t.Fatalf("ack = %s", got)
	}
	for range 50 {
		f := c.text()
		if bytes.HasPrefix(f, []byte(`{"stream"`)) {
			t.Fatalf("raw connection got an envelope: %s", f)
		}
		e := decodeEvent(t, f)
		if e.Symbol != "S0001USDT" && e.Symbol != "S0003USDT" {
			t.Fatalf("unsubscribed symbol %s", e.Symbol)
		}
	}
	c.sendJSON(`{"method":"LIST_SUBSCRIPTIONS","id":8}`)
	c.sendJSON(`{"method":"UNSUBSCRIBE","params":["s0001usdt@aggTrade"],"id":9}`)
	c.sendJSON(`{"method":"LIST_SUBSCRIPTIONS","id":10}`)
	c.sendJSON(`not json`)
	want := []string{
		`{"result":["s0001usdt@aggTrade","s0003usdt@aggTrade"],"id":8}`,
		`{"result":null,"id":9}`,
		`{"result":["s0003usdt@aggTrade"],"id":10}`,
	}
	var replies []string
	unsubscribed := false
	for len(replies) < 4 {
		f := c.text()
		if bytes.Contains(f, []byte(`"id"`)) {
			replies = append(replies, string(f))
			unsubscribed = len(replies) >= 2
			continue
		}
		if e := decodeEvent(t, f); unsubscribed && e.Symbol == "S0001USDT" {
			t.Fatalf("got S0001USDT after UNSUBSCRIBE was answered")
		}
	}
	for i, w := range want {
		if replies[i] != w {
			t.Errorf("reply %d = %s, want %s", i, replies[i], w)
		}
	}
	var bad struct {
		Error struct{ Code int } `json:"error"`
		ID    *int               `json:"id"`
	}
	if err := json.Unmarshal([]byte(replies[3]), &bad); err != nil || bad.Error.Code != 2 || bad.ID != nil {
		t.Errorf("bad-JSON reply = %s", replies[3])
	}
}

func TestLegacyFuturesPathIsSilent(t *testing.T) {
	s := startServer(t, synthetic("futures"))
	legacy := dial(t, s.WSURL()+"/stream?streams=s0000usdt@aggTrade/s0001usdt@aggTrade")
	raw := dial(t, s.WSURL()+"/ws")
	raw.sendJSON(`{"method":"SUBSCRIBE","params":["s0000usdt@aggTrade"],"id":1}`)
	if got := string(raw.text()); got != `{"result":null,"id":1}` {
		t.Fatalf("legacy /ws ack = %s", got)
	}
	good := dial(t, s.WSURL()+"/market/stream?streams=s0000usdt@aggTrade")
	for range 20 {
		good.text()
	}
	for _, c := range []*client{legacy, raw} {
		f, err := c.frame(200 * time.Millisecond)
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("legacy path delivered %q (err %v)", f.Payload, err)
		}
	}
}

func TestTooManyMessagesCloses(t *testing.T) {
	for _, tc := range []struct {
		market string
		limit  int
	}{{"futures", 10}, {"spot", 5}} {
		t.Run("market="+tc.market, func(t *testing.T) {
			s := startServer(t, synthetic(tc.market))
			path := "/market/ws"
			if tc.market == "spot" {
				path = "/ws"
			}
			ok := dial(t, s.WSURL()+path)
			for i := range tc.limit {
				ok.sendJSON(`{"method":"LIST_SUBSCRIPTIONS","id":` + string(rune('0'+i%10)) + `}`)
			}
			c := dial(t, s.WSURL()+path)
			for range tc.limit + 1 {
				c.sendJSON(`{"method":"LIST_SUBSCRIPTIONS","id":1}`)
			}
			texts, _ := c.untilClosed(5 * time.Second)
			if len(texts) != tc.limit {
				t.Errorf("got %d replies before the close, want %d", len(texts), tc.limit)
			}
			if n := s.Stats().ConnsTooFast; n != 1 {
				t.Errorf("ConnsTooFast = %d, want 1 (the connection at the limit stays)", n)
			}
		})
	}
}

func TestMaxStreams(t *testing.T) {
	cfg := synthetic("futures")
	cfg.MaxStreams = 2
	s := startServer(t, cfg)
	c := dial(t, s.WSURL()+"/market/ws")
	c.sendJSON(`{"method":"SUBSCRIBE","params":["a@aggTrade","b@aggTrade","c@aggTrade"],"id":3}`)
	if got := string(c.text()); !strings.Contains(got, `"error"`) || !strings.HasSuffix(got, `"id":3}`) {
		t.Fatalf("over-limit SUBSCRIBE answered %s", got)
	}
	c.sendJSON(`{"method":"SUBSCRIBE","params":["a@aggTrade","b@aggTrade"],"id":4}`)
	if got := string(c.text()); got != `{"result":null,"id":4}` {
		t.Fatalf("SUBSCRIBE at the limit answered %s", got)
	}
}

func TestPingPong(t *testing.T) {
	cfg := synthetic("futures")
	cfg.PingEvery = 120 * time.Millisecond // pongs count against 10 messages/s
	cfg.PongTimeout = 300 * time.Millisecond
	s := startServer(t, cfg)

	// A client that answers every ping stays; one that never does is closed.
	polite := dial(t, s.WSURL()+"/market/stream?streams=s0000usdt@aggTrade")
	rude := dial(t, s.WSURL()+"/market/stream?streams=s0001usdt@aggTrade")
	pings := 0
	for pings < 5 {
		f, err := polite.frame(5 * time.Second)
		if err != nil {
			t.Fatalf("polite client: %v", err)
		}
		if f.Header.OpCode == ws.OpPing {
			pings++
			polite.send(ws.OpPong, f.Payload)
		}
		if f.Header.OpCode == ws.OpClose {
			t.Fatal("polite client closed")
		}
	}
	rude.untilClosed(5 * time.Second)
	if n := s.Stats().PongTimeouts; n != 1 {
		t.Errorf("PongTimeouts = %d, want 1", n)
	}

	// Client pings are answered with the same payload.
	polite.send(ws.OpPing, []byte("hello"))
	for {
		f, err := polite.frame(5 * time.Second)
		if err != nil {
			t.Fatalf("no pong: %v", err)
		}
		if f.Header.OpCode == ws.OpPing {
			polite.send(ws.OpPong, f.Payload)
		}
		if f.Header.OpCode == ws.OpPong {
			if string(f.Payload) != "hello" {
				t.Fatalf("pong payload %q", f.Payload)
			}
			break
		}
	}
}

func TestCloseFrameIsAnswered(t *testing.T) {
	s := startServer(t, synthetic("futures"))
	c := dial(t, s.WSURL()+"/market/stream?streams=s0000usdt@aggTrade")
	c.text()
	c.send(ws.OpClose, closePayload(ws.StatusNormalClosure, "bye"))
	if _, gotClose := c.untilClosed(5 * time.Second); !gotClose {
		t.Fatal("no close frame in reply")
	}
}

func TestAppendHeaderMatchesWS(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 300, 65535, 65536, 1 << 20} {
		var want bytes.Buffer
		if err := ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(n)}); err != nil {
			t.Fatal(err)
		}
		if got := appendHeader(nil, ws.OpText, n); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("n=%d: %x, want %x", n, got, want.Bytes())
		}
	}
}

// TestFanoutAllocs: steady-state fan-out of generated frames allocates nothing.
func TestFanoutAllocs(t *testing.T) {
	cfg := synthetic("futures")
	cfg.Rate = 0
	cfg.History = 1000
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(s, nil, nil)
	c.combined = true
	c.subscribeLocked([]string{"s0000usdt@aggTrade", "s0001usdt@aggTrade", "s0003usdt@aggTrade"})
	s.addConn(c)
	b := &batch{}
	run := func() {
		b.reset()
		s.mu.Lock()
		for range batchMax {
			s.genOne(b)
		}
		s.mu.Unlock()
		s.fanout(b)
		c.mu.Lock()
		c.pending = c.pending[:0] // what the writer's swap does
		c.mu.Unlock()
	}
	for range 20 {
		run()
	}
	if a := testing.AllocsPerRun(50, run); a > 0 {
		t.Errorf("fanout allocates %.1f per batch", a)
	}
}
