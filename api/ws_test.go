package api

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/klagg/klagg/shard"
)

func fastCadence(c *Config) { c.Cadence = 20 * time.Millisecond }

func TestWSRawStream(t *testing.T) {
	s, _ := testServer(t, "futures", fastCadence)
	c := dialWS(t, s.wsURL("/ws/btcusdt@kline_1m"))
	waitFor(t, 5*time.Second, "the subscription", func() bool { return s.Stats().Subscriptions == 1 })
	open := mkKline(t, 0, 0, t0, 1, false)
	s.Publish(&open)
	checkEvent(t, decodeEvent(t, c.text(5*time.Second)), &open, "BTCUSDT", "1m")
	closed := mkKline(t, 0, 0, t0, 2, true)
	s.Publish(&closed)
	ev := decodeEvent(t, c.text(5*time.Second))
	checkEvent(t, ev, &closed, "BTCUSDT", "1m")
	if !ev.K.X {
		t.Fatal("a closed kline must be sent with x: true")
	}
	// Other streams are not delivered to this connection.
	other := mkKline(t, 1, 0, t0, 3, true)
	s.Publish(&other)
	next := mkKline(t, 0, 0, t0+minute, 4, true)
	s.Publish(&next)
	checkEvent(t, decodeEvent(t, c.text(5*time.Second)), &next, "BTCUSDT", "1m")
}

func TestWSCombinedAndRoutes(t *testing.T) {
	s, _ := testServer(t, "futures", fastCadence)
	paths := []string{
		"/stream?streams=btcusdt@kline_1m/ethusdt@kline_90m",
		"/market/stream?streams=btcusdt@kline_1m/ethusdt@kline_90m",
		"/public/stream?streams=btcusdt@kline_1m/ethusdt@kline_90m",
	}
	var conns []*wsClient
	for _, p := range paths {
		conns = append(conns, dialWS(t, s.wsURL(p)))
	}
	raw := []*wsClient{dialWS(t, s.wsURL("/market/ws/ethusdt@kline_90m")), dialWS(t, s.wsURL("/public/ws/ethusdt@kline_90m"))}
	waitFor(t, 5*time.Second, "subscriptions", func() bool { return s.Stats().Subscriptions == 8 })
	ivs := testIntervals(t)
	k := mkKline(t, 1, 3, ivs[3].OpenTime(t0), 5, true)
	s.Publish(&k)
	for i, c := range conns {
		var env struct {
			Stream string          `json:"stream"`
			Data   json.RawMessage `json:"data"`
		}
		p := c.text(5 * time.Second)
		if err := json.Unmarshal(p, &env); err != nil || env.Stream != "ethusdt@kline_90m" {
			t.Fatalf("%s: not a combined event: %s", paths[i], p)
		}
		checkEvent(t, decodeEvent(t, env.Data), &k, "ETHUSDT", "90m")
	}
	for _, c := range raw {
		checkEvent(t, decodeEvent(t, c.text(5*time.Second)), &k, "ETHUSDT", "90m")
	}
}

func TestWSControl(t *testing.T) {
	s, _ := testServer(t, "futures", func(c *Config) { fastCadence(c); c.MessagesPerSec = 100 })
	c := dialWS(t, s.wsURL("/ws/0")) // ccxt's path: not a stream name
	exchange := func(req, want string) {
		t.Helper()
		c.sendJSON(req)
		if got := string(c.text(5 * time.Second)); got != want {
			t.Fatalf("%s\n got %s\nwant %s", req, got, want)
		}
	}
	exchange(`{"method":"LIST_SUBSCRIPTIONS","id":1}`, `{"result":[],"id":1}`)
	exchange(`{"method":"SUBSCRIBE","params":["btcusdt@kline_1m","ETHUSDT@kline_2m"],"id":2}`, `{"result":null,"id":2}`)
	exchange(`{"method":"LIST_SUBSCRIPTIONS","id":"abc-123"}`, `{"result":["btcusdt@kline_1m","ethusdt@kline_2m"],"id":"abc-123"}`)
	exchange(`{"method":"UNSUBSCRIBE","params":["btcusdt@kline_1m"],"id":null}`, `{"result":null,"id":null}`)
	exchange(`{"method":"LIST_SUBSCRIPTIONS","id":4}`, `{"result":["ethusdt@kline_2m"],"id":4}`)
	exchange(`{"method":"GET_PROPERTY","params":["combined"],"id":5}`, `{"result":false,"id":5}`)
	exchange(`{"method":"SUBSCRIB","params":["btcusdt@kline_1m"],"id":6}`,
		"{\"error\":{\"code\":2,\"msg\":\"Invalid request: unknown variant `SUBSCRIB`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`\"},\"id\":6}")
	exchange(`{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":7}`,
		`{"error":{"code":2,"msg":"Invalid request: klagg serves \u003csymbol\u003e@kline_\u003cinterval\u003e streams only, not \"btcusdt@aggTrade\""},"id":7}`)
	exchange(`{"method":"SUBSCRIBE","params":["btcusdt@kline_3m"],"id":8}`,
		`{"error":{"code":2,"msg":"Invalid request: interval \"3m\" is not served (served: 1m,2m,5m,90m,1h)"},"id":8}`)
	exchange(`{"method":"SUBSCRIBE","params":["btcusdt@kline_1m"],"id":1.5}`,
		`{"error":{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"},"id":null}`)
	exchange(`{"params":[],"id":9}`, "{\"error\":{\"code\":2,\"msg\":\"Invalid request: missing field `method`\"},\"id\":9}")
	c.sendJSON(`{"method":`)
	var e struct {
		Error struct{ Code int } `json:"error"`
		ID    *int               `json:"id"`
	}
	if p := c.text(5 * time.Second); json.Unmarshal(p, &e) != nil || e.Error.Code != 3 || e.ID != nil {
		t.Fatalf("bad JSON: %s", p)
	}
	// SET_PROPERTY combined wraps the events from now on.
	exchange(`{"method":"SET_PROPERTY","params":["combined",true],"id":10}`, `{"result":null,"id":10}`)
	k := mkKline(t, 1, 1, t0, 8, true)
	s.Publish(&k)
	p := string(c.text(5 * time.Second))
	if !strings.HasPrefix(p, `{"stream":"ethusdt@kline_2m","data":{"e":"kline"`) {
		t.Fatalf("combined event: %s", p)
	}
}

// A symbol subscribed before it is listed starts to flow once it is.
func TestWSLaterListing(t *testing.T) {
	s, _ := testServer(t, "futures", fastCadence)
	c := dialWS(t, s.wsURL("/ws/dogeusdt@kline_5m"))
	waitFor(t, 5*time.Second, "the subscription", func() bool { return s.Stats().Subscriptions == 1 })
	syms := s.cfg.Symbols.Add("DOGEUSDT")
	idx, _ := syms.Lookup([]byte("DOGEUSDT"))
	k := mkKline(t, 0, 2, t0, 9, true)
	k.Symbol = idx
	s.Publish(&k)
	checkEvent(t, decodeEvent(t, c.text(5*time.Second)), &k, "DOGEUSDT", "5m")
}

// Open-kline updates go out at most once per cadence period, carrying the
// latest state; every closing event goes out at once.
func TestWSCadence(t *testing.T) {
	s, _ := testServer(t, "spot", func(c *Config) { c.Cadence = 150 * time.Millisecond })
	c := dialWS(t, s.wsURL("/ws/solusdt@kline_1m"))
	waitFor(t, 5*time.Second, "the subscription", func() bool { return s.Stats().Subscriptions == 1 })
	var last shard.Kline
	began := time.Now()
	for i := 0; i < 50; i++ {
		last = mkKline(t, 2, 0, t0, int64(i), false)
		s.Publish(&last)
	}
	// The updates coalesce: at most one event per cadence period, the last one
	// carrying the latest state.
	events := 0
	for {
		ev := decodeEvent(t, c.text(5*time.Second))
		events++
		if ev.K.N == last.Count {
			checkEvent(t, ev, &last, "SOLUSDT", "1m")
			break
		}
	}
	// Updates go out on a wall-clock grid of the cadence, the first one at
	// once: one event, then one per grid point crossed.
	if maxEvents := 2 + int(time.Since(began)/(150*time.Millisecond)); events > maxEvents {
		t.Fatalf("%d update events for 50 updates within %v, want at most %d", events, time.Since(began), maxEvents)
	}
	closed := mkKline(t, 2, 0, t0, 100, true)
	sent := time.Now()
	s.Publish(&closed)
	checkEvent(t, decodeEvent(t, c.text(5*time.Second)), &closed, "SOLUSDT", "1m")
	t.Logf("closing event received %v after Publish", time.Since(sent))
	// The writer counts a frame after its write returns, which may be after the client read it.
	waitFor(t, 5*time.Second, "the frame count", func() bool { return s.Stats().FramesSent >= uint64(events)+1 })
	time.Sleep(50 * time.Millisecond)
	if st := s.Stats(); st.FramesSent != uint64(events)+1 {
		t.Fatalf("%d frames sent, want %d (the coalesced updates and the close)", st.FramesSent, events+1)
	}
	// EveryChange sends each update.
	s2, _ := testServer(t, "spot", func(c *Config) { c.EveryChange = true })
	c2 := dialWS(t, s2.wsURL("/ws/solusdt@kline_1m"))
	waitFor(t, 5*time.Second, "the subscription", func() bool { return s2.Stats().Subscriptions == 1 })
	for i := 0; i < 5; i++ {
		k := mkKline(t, 2, 0, t0, int64(i), false)
		s2.Publish(&k)
		checkEvent(t, decodeEvent(t, c2.text(5*time.Second)), &k, "SOLUSDT", "1m")
	}
}

// Every subscriber of a stream gets the same encoded frame: one encoding per
// event and framing, whatever the number of subscribers.
func TestWSSharedFrames(t *testing.T) {
	s, _ := testServer(t, "futures", fastCadence)
	var cs []*wsClient
	for i := 0; i < 4; i++ {
		cs = append(cs, dialWS(t, s.wsURL("/ws/btcusdt@kline_1h")))
	}
	waitFor(t, 5*time.Second, "subscriptions", func() bool { return s.Stats().Subscriptions == 4 })
	before := s.m.eventsEncoded.Get()
	k := mkKline(t, 0, 4, t0, 3, true)
	s.Publish(&k)
	var first []byte
	for _, c := range cs {
		p := c.text(5 * time.Second)
		if first == nil {
			first = p
		} else if string(p) != string(first) {
			t.Fatalf("subscribers got different frames:\n%s\n%s", first, p)
		}
	}
	// The hub counts an event once it has queued it everywhere, which may be
	// after a client read it.
	waitFor(t, 5*time.Second, "the encoding count", func() bool { return s.m.eventsEncoded.Get() > before })
	time.Sleep(50 * time.Millisecond)
	if n := s.m.eventsEncoded.Get() - before; n != 1 {
		t.Fatalf("%d encodings for one event and 4 subscribers, want 1", n)
	}
}

func TestWSCorrections(t *testing.T) {
	for _, send := range []bool{true, false} {
		s, _ := testServer(t, "futures", func(c *Config) { fastCadence(c); c.Corrections = send })
		c := dialWS(t, s.wsURL("/ws/btcusdt@kline_1m"))
		waitFor(t, 5*time.Second, "the subscription", func() bool { return s.Stats().Subscriptions == 1 })
		k := mkKline(t, 0, 0, t0, 1, true)
		s.Publish(&k)
		checkEvent(t, decodeEvent(t, c.text(5*time.Second)), &k, "BTCUSDT", "1m")
		corr := mkKline(t, 0, 0, t0, 2, true)
		corr.Flags = shard.FlagCorrected
		s.Publish(&corr)
		next := mkKline(t, 0, 0, t0+minute, 3, true)
		s.Publish(&next)
		if send {
			checkEvent(t, decodeEvent(t, c.text(5*time.Second)), &corr, "BTCUSDT", "1m")
		}
		checkEvent(t, decodeEvent(t, c.text(5*time.Second)), &next, "BTCUSDT", "1m")
	}
}

// A client that cannot keep up is disconnected with a reason; what it got
// before is every closing event in order, none skipped.
func TestWSSlowConsumer(t *testing.T) {
	s, _ := testServer(t, "futures", func(c *Config) { c.SendQueue = 64; c.WriteTimeout = 3 * time.Second })
	c := dialWS(t, s.wsURL("/ws/btcusdt@kline_1m"))
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	waitFor(t, 5*time.Second, "the subscription", func() bool { return s.Stats().Subscriptions == 1 })
	published := 0
	for i := 0; i < 200_000 && s.Stats().SlowDisconnects == 0; i++ {
		k := mkKline(t, 0, 0, t0+int64(i)*minute, int64(i), true)
		k.Count = int64(i)
		s.Publish(&k)
		published++
		if i%1000 == 999 {
			waitProcessed(t, s)
		}
	}
	if s.Stats().SlowDisconnects != 1 {
		t.Fatalf("a client that never reads was not disconnected after %d closing events", published)
	}
	var reason string
	next := int64(0)
	for {
		op, p, err := c.frame(5 * time.Second)
		if err != nil {
			break
		}
		if op == ws.OpClose {
			if len(p) >= 2 {
				reason = fmt.Sprintf("%d %s", binary.BigEndian.Uint16(p), p[2:])
			}
			break
		}
		if op != ws.OpText {
			continue
		}
		ev := decodeEvent(t, p)
		if ev.K.N != next {
			t.Fatalf("closing event %d arrived where %d was due: a closed kline was skipped", ev.K.N, next)
		}
		next++
	}
	t.Logf("received %d of %d closing events before the disconnect; close frame %q", next, published, reason)
	if !strings.Contains(reason, "slow consumer") {
		t.Fatalf("close frame %q does not give the reason", reason)
	}
}

func TestWSMessageRateLimit(t *testing.T) {
	s, _ := testServer(t, "futures", nil)
	c := dialWS(t, s.wsURL("/ws"))
	for i := 0; i < 11; i++ {
		c.send(ws.OpPing, []byte("x"))
	}
	for {
		op, p, err := c.frame(5 * time.Second)
		if err != nil {
			t.Fatalf("no close frame after 11 messages in a second: %v", err)
		}
		if op == ws.OpClose {
			if code := binary.BigEndian.Uint16(p); code != uint16(ws.StatusPolicyViolation) || string(p[2:]) != "Too many requests" {
				t.Fatalf("close %d %q", code, p[2:])
			}
			return
		}
		if op == ws.OpPong && string(p) != "x" {
			t.Fatalf("pong payload %q, want the ping's", p)
		}
	}
}

func TestWSServerPing(t *testing.T) {
	s, _ := testServer(t, "futures", func(c *Config) {
		c.PingEvery = 50 * time.Millisecond
		c.PongTimeout = 300 * time.Millisecond
		c.MessagesPerSec = 100
	})
	good := dialWS(t, s.wsURL("/ws/btcusdt@kline_1m"))
	bad := dialWS(t, s.wsURL("/ws/btcusdt@kline_1m"))
	pings := 0
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		op, p, err := good.frame(time.Second)
		if err != nil {
			t.Fatalf("a client that answers pings was dropped: %v", err)
		}
		if op == ws.OpPing {
			pings++
			good.send(ws.OpPong, p)
		}
	}
	if pings < 5 {
		t.Fatalf("%d pings in a second at a 50 ms schedule", pings)
	}
	for {
		op, p, err := bad.frame(2 * time.Second)
		if err != nil {
			t.Fatalf("no close frame for a client that never answers: %v", err)
		}
		if op == ws.OpClose {
			if !strings.Contains(string(p[2:]), "pong timeout") {
				t.Fatalf("close reason %q", p[2:])
			}
			break
		}
	}
	if s.m.wsPongTimeouts.Get() != 1 {
		t.Fatalf("%d pong timeouts counted, want 1", s.m.wsPongTimeouts.Get())
	}
}

func TestWSLimits(t *testing.T) {
	s, _ := testServer(t, "futures", func(c *Config) { c.MaxStreams = 2; c.MaxConns = 2; c.ConnAttempts = 4 })
	c := dialWS(t, s.wsURL("/ws/btcusdt@kline_1m"))
	c.sendJSON(`{"method":"SUBSCRIBE","params":["ethusdt@kline_1m","solusdt@kline_1m"],"id":1}`)
	if got := string(c.text(5 * time.Second)); got != `{"error":{"code":2,"msg":"Invalid request: more than 2 streams on one connection"},"id":1}` {
		t.Fatalf("over MaxStreams: %s", got)
	}
	if status, body := get(t, s.httpURL("/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m/solusdt@kline_1m")); status != 400 {
		t.Fatalf("a URL over MaxStreams: %d %s", status, body)
	}
	dialWS(t, s.wsURL("/ws"))
	// The third connection is over MaxConns: refused at the handshake.
	if _, _, _, err := ws.Dial(t.Context(), s.wsURL("/ws")); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("over MaxConns: %v", err)
	}
	// 4 attempts so far (the plain GET counts): the next is refused at the handshake.
	if _, _, _, err := ws.Dial(t.Context(), s.wsURL("/ws")); err == nil {
		t.Fatal("connection attempts over the limit must be refused")
	}
}

func TestWSMessageSize(t *testing.T) {
	s, _ := testServer(t, "futures", func(c *Config) { c.MaxMessage = 1024 })
	c := dialWS(t, s.wsURL("/ws"))
	c.sendJSON(`{"method":"SUBSCRIBE","params":["` + strings.Repeat("a", 2000) + `"],"id":1}`)
	op, p, err := c.frame(5 * time.Second)
	if err != nil || op != ws.OpClose || binary.BigEndian.Uint16(p) != uint16(ws.StatusMessageTooBig) {
		t.Fatalf("oversized message: %v %v %q", op, err, p)
	}
}

func TestPublishDoesNotAllocate(t *testing.T) {
	s, _ := testServer(t, "futures", nil)
	k := mkKline(t, 0, 0, t0, 1, false)
	allocs := testing.AllocsPerRun(1000, func() { s.Publish(&k) })
	if allocs != 0 {
		t.Fatalf("Publish allocates %.1f times per call", allocs)
	}
}

// A full queue drops updates (counted) and keeps closed klines in the spill
// list, in order; beyond it a loss is counted.
func TestPublishSpill(t *testing.T) {
	s, _ := testServer(t, "futures", func(c *Config) { c.QueueSize = 4; c.SpillSize = 8; c.EveryChange = true })
	c := dialWS(t, s.wsURL("/ws/btcusdt@kline_1m"))
	waitFor(t, 5*time.Second, "the subscription", func() bool { return s.Stats().Subscriptions == 1 })
	h := s.hub
	h.stop.Store(true) // stall the hub so the queue fills
	h.waiter.Wake()
	<-h.done
	for i := 0; i < 14; i++ {
		k := mkKline(t, 0, 0, t0+int64(i)*minute, int64(i), true)
		k.Count = int64(i)
		s.Publish(&k)
		u := mkKline(t, 0, 0, t0+int64(i+1)*minute, int64(i), false)
		s.Publish(&u)
	}
	st := s.Stats()
	// 4 fit the ring (closed 0, update, closed 1, update); 8 closed spill; 4 closed are lost.
	if st.ClosedLost != 4 || s.m.closedSpilled.Get() != 8 || st.UpdatesDropped != 12 {
		t.Fatalf("lost %d spilled %d dropped %d", st.ClosedLost, s.m.closedSpilled.Get(), st.UpdatesDropped)
	}
	h.done = make(chan struct{})
	h.stop.Store(false)
	go h.run()
	want := []int64{0, -1, 1, -1, 2, 3, 4, 5, 6, 7, 8, 9}
	for _, n := range want {
		ev := decodeEvent(t, c.text(5*time.Second))
		if n >= 0 && (!ev.K.X || ev.K.N != n) || n < 0 && ev.K.X {
			t.Fatalf("event %+v, want closed kline %d (-1: an update)", ev.K, n)
		}
	}
}

// A flag-only mark (gap, late) of a kept closed kline corrects it for REST
// and sends it again; a mark of a kline no longer kept changes nothing.
func TestMarkEvents(t *testing.T) {
	s, _ := testServer(t, "futures", fastCadence)
	c := dialWS(t, s.wsURL("/ws/btcusdt@kline_1m"))
	waitFor(t, 5*time.Second, "the subscription", func() bool { return s.Stats().Subscriptions == 1 })
	k := mkKline(t, 0, 0, t0, 1, true)
	s.Publish(&k)
	checkEvent(t, decodeEvent(t, c.text(5*time.Second)), &k, "BTCUSDT", "1m")
	stale := shard.Kline{Symbol: 0, Interval: 0, OpenTime: t0 - 100*minute, CloseTime: t0 - 99*minute - 1, Closed: true, Mark: true, Flags: shard.FlagLate}
	s.Publish(&stale)
	mark := shard.Kline{Symbol: 0, Interval: 0, OpenTime: t0, CloseTime: t0 + minute - 1, Closed: true, Mark: true, Flags: shard.FlagGap}
	s.Publish(&mark)
	want := k
	want.Flags |= shard.FlagGap | shard.FlagCorrected
	ev := decodeEvent(t, c.text(5*time.Second))
	checkEvent(t, ev, &want, "BTCUSDT", "1m")
	if ev.K.B != "gap" {
		t.Fatalf("ignore field %q, want gap", ev.K.B)
	}
	_, body := get(t, s.httpURL("/fapi/v1/klines?symbol=BTCUSDT&interval=1m"))
	rows := decodeRows(t, body)
	if len(rows) != 1 || rows[0] != rowOf(&want) {
		t.Fatalf("REST after a mark: %+v", rows)
	}
}
