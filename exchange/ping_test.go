package exchange

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// pingPeer is a scripted server: it hands every ping the client sends to the
// test (pings) and writes whatever frames the test gives it (send).
type pingPeer struct {
	pings chan []byte
	send  chan ws.Frame
}

func startPingPeer(t *testing.T, cfg ConnConfig) (*Conn, *pingPeer) {
	t.Helper()
	p := &pingPeer{pings: make(chan []byte, 16), send: make(chan ws.Frame, 16)}
	url := wsServer(t, func(conn net.Conn) {
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case f := <-p.send:
					if err := ws.WriteFrame(conn, f); err != nil {
						return
					}
				case <-done:
					return
				}
			}
		}()
		for {
			f, masked, err := readClientFrame(conn)
			if err != nil || f.Header.OpCode == ws.OpClose {
				return
			}
			if !masked {
				t.Errorf("unmasked %v frame from the client", f.Header.OpCode)
			}
			if f.Header.OpCode == ws.OpPing {
				p.pings <- f.Payload
			}
		}
	})
	return dialTest(t, url, cfg), p
}

// ping sends a ping from c and returns its payload as the server saw it.
func (p *pingPeer) ping(t *testing.T, c *Conn) []byte {
	t.Helper()
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	select {
	case payload := <-p.pings:
		return payload
	case <-time.After(5 * time.Second):
		t.Fatal("the server saw no ping")
		return nil
	}
}

// exchange makes the server write frames followed by a text marker and reads c
// up to the marker: every frame before it has been handled by then.
func (p *pingPeer) exchange(t *testing.T, c *Conn, frames ...ws.Frame) {
	t.Helper()
	for _, f := range frames {
		p.send <- f
	}
	p.send <- ws.NewTextFrame([]byte("marker"))
	for {
		msg, err := c.Read(nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(msg) == "marker" {
			return
		}
	}
}

func TestConnPing(t *testing.T) {
	c, peer := startPingPeer(t, ConnConfig{})
	clk := newFakeClock(time.Unix(1_700_000_000, 0))
	c.wmu.Lock()
	c.now, c.sleep = clk.now, clk.sleep
	c.wmu.Unlock()
	waiting := func(want bool, since time.Time) {
		t.Helper()
		got, ok := c.UnansweredPing()
		if ok != want || want && !got.Equal(since) {
			t.Fatalf("UnansweredPing() = %v, %v; want %v, %v", got, ok, since, want)
		}
	}
	waiting(false, time.Time{})

	// A ping answered by its pong.
	t0 := clk.now()
	p1 := peer.ping(t, c)
	if len(p1) != pingPayloadSize {
		t.Fatalf("ping payload %x, want %d bytes", p1, pingPayloadSize)
	}
	waiting(true, t0)
	peer.exchange(t, c, ws.NewPongFrame(p1))
	waiting(false, time.Time{})

	// Pongs that answer nothing: unsolicited, another nonce, a replay of the
	// answered ping, a sequence number never sent.
	clk.advance(time.Second)
	t1 := clk.now()
	p2 := peer.ping(t, c)
	if slices.Equal(p1, p2) {
		t.Fatalf("two pings with the same payload %x", p1)
	}
	other := slices.Clone(p2)
	other[0] ^= 1
	future := slices.Clone(p2)
	binary.BigEndian.PutUint64(future[8:], binary.BigEndian.Uint64(p2[8:])+1)
	peer.exchange(t, c, ws.NewPongFrame(nil), ws.NewPongFrame([]byte("unsolicited")), ws.NewPongFrame(other),
		ws.NewPongFrame(p1), ws.NewPongFrame(future))
	waiting(true, t1)

	// Two more pings in flight; the pong of the middle one leaves the wait
	// counting from the latest, whose pong ends it.
	clk.advance(time.Second)
	p3 := peer.ping(t, c)
	clk.advance(time.Second)
	t3 := clk.now()
	p4 := peer.ping(t, c)
	waiting(true, t1)
	peer.exchange(t, c, ws.NewPongFrame(p3))
	waiting(true, t3)
	peer.exchange(t, c, ws.NewPongFrame(p2)) // older than the answered p3: stale
	waiting(true, t3)
	peer.exchange(t, c, ws.NewPongFrame(p4))
	waiting(false, time.Time{})

	s := c.Stats()
	if s.PingsSent != 4 || s.PongsMatched != 3 || s.PongsReceived != 9 || s.Messages != 5 {
		t.Errorf("stats %+v, want 4 pings sent, 9 pongs received of which 3 matched, 5 markers", s)
	}
}

// TestConnPingRateLimit: a ping counts against the message rate limit like a
// SUBSCRIBE, and waits for the window like one.
func TestConnPingRateLimit(t *testing.T) {
	c, peer := startPingPeer(t, ConnConfig{MessagesPerSecond: 2})
	clk := newFakeClock(time.Unix(1_700_000_000, 0))
	c.wmu.Lock()
	c.now, c.sleep = clk.now, clk.sleep
	c.wmu.Unlock()
	if err := c.WriteText([]byte(`{"method":"LIST_SUBSCRIPTIONS","id":1}`)); err != nil {
		t.Fatal(err)
	}
	peer.ping(t, c)
	if got := clk.recorded(); len(got) != 0 {
		t.Fatalf("waited %v within the limit", got)
	}
	peer.ping(t, c) // the third message in one second: waits for the window
	if got := clk.recorded(); !slices.Equal(got, []time.Duration{time.Second}) {
		t.Errorf("waits %v, want [1s]", got)
	}
	if s := c.Stats(); s.WriteWaits != 1 || s.PingsSent != 2 || s.MessagesWritten != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestConnPingClosed(t *testing.T) {
	c, _ := startPingPeer(t, ConnConfig{})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close: %v, want ErrClosed", err)
	}
	if _, ok := c.UnansweredPing(); ok {
		t.Error("a ping that was never sent waits for its pong")
	}
}

// TestConnPingAllocs: Ping, and Read noting its pong, allocate nothing. The
// server side is a prepared stream of pongs (a live server would allocate on
// its side of the measurement).
func TestConnPingAllocs(t *testing.T) {
	const runs = 200
	c := newConn(discardConn{}, nil, ConnConfig{MessagesPerSecond: 1 << 20}.withDefaults())
	var pongs bytes.Buffer
	for seq := uint64(1); seq <= runs+1; seq++ { // AllocsPerRun runs once more to warm up
		var p [pingPayloadSize]byte
		binary.BigEndian.PutUint64(p[:8], c.pings.nonce)
		binary.BigEndian.PutUint64(p[8:], seq)
		if err := ws.WriteFrame(&pongs, ws.NewPongFrame(p[:])); err != nil {
			t.Fatal(err)
		}
	}
	c.r.Reset(&pongs)
	allocs := testing.AllocsPerRun(runs, func() {
		if err := c.Ping(); err != nil {
			panic(err)
		}
		if msg, err := c.Read(nil); err != nil || msg != nil {
			panic(fmt.Sprintf("Read: %q, %v", msg, err))
		}
		if _, ok := c.UnansweredPing(); ok {
			panic("pong not matched")
		}
	})
	if allocs != 0 {
		t.Errorf("a ping and its pong allocate %.2f times, want 0", allocs)
	}
	if s := c.Stats(); s.PingsSent != runs+1 || s.PongsMatched != runs+1 {
		t.Errorf("stats %+v", s)
	}
}
