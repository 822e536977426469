package fakex

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// startServer starts a server for cfg (Listen on loopback) and closes it at
// the end of the test.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// client is a bare WebSocket test client built on gobwas/ws frames.
type client struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dial(t testing.TB, url string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dialer{}.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, 64<<10)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &client{t: t, nc: nc, r: br}
}

// frame reads the next frame of any kind, failing after timeout.
func (c *client) frame(timeout time.Duration) (ws.Frame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 1<<20 {
		return ws.Frame{}, fmt.Errorf("frame of %d bytes", h.Length)
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	_, err = io.ReadFull(c.r, f.Payload)
	return f, err
}

// text returns the next text frame, skipping pings and pongs; it fails the
// test on a close, an error or a timeout.
func (c *client) text() []byte {
	c.t.Helper()
	for {
		f, err := c.frame(5 * time.Second)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpText:
			return f.Payload
		case ws.OpClose:
			c.t.Fatalf("unexpected close frame %q", f.Payload)
		}
	}
}

// untilClosed reads text frames until the connection ends and returns them.
func (c *client) untilClosed(timeout time.Duration) (texts [][]byte, closeFrame bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f, err := c.frame(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection still open after %v", timeout)
			}
			return texts, false
		}
		switch f.Header.OpCode {
		case ws.OpText:
			texts = append(texts, f.Payload)
		case ws.OpClose:
			return texts, true
		}
	}
}

func (c *client) send(op ws.OpCode, p []byte) {
	c.t.Helper()
	if err := ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewFrame(op, true, p))); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) sendJSON(s string) { c.send(ws.OpText, []byte(s)) }

// event is an aggTrade, bare or inside its combined envelope.
type event struct {
	Stream string `json:"stream"`
	Type   string `json:"e"`
	EventT int64  `json:"E"`
	Symbol string `json:"s"`
	AggID  int64  `json:"a"`
	Price  string `json:"p"`
	Qty    string `json:"q"`
	First  int64  `json:"f"`
	Last   int64  `json:"l"`
	Time   int64  `json:"T"`
	Maker  bool   `json:"m"`
	Best   *bool  `json:"M"`
}

func decodeEvent(t testing.TB, frame []byte) event {
	t.Helper()
	var env struct {
		Stream string          `json:"stream"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(frame, &env); err != nil {
		t.Fatalf("bad frame %q: %v", frame, err)
	}
	body := frame
	if env.Data != nil {
		body = env.Data
	}
	var e event
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("bad event %q: %v", body, err)
	}
	e.Stream = env.Stream
	return e
}

// get does a REST GET and returns status, headers and body.
func get(t testing.TB, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, body
}

func synthetic(market string) Config {
	cfg := DefaultConfig()
	cfg.Market = market
	cfg.Symbols = 4
	cfg.Rate = 2000
	cfg.WaitConns = 1
	return cfg
}
