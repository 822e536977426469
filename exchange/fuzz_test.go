package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// discardConn is a net.Conn whose writes vanish; reads come from elsewhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) Read(p []byte) (int, error)       { return 0, io.EOF }

// oneByteReader splits the stream at every byte, the worst case for a parser
// that must not assume a frame arrives in one read.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// FuzzConnRead feeds arbitrary server bytes to Read, whole and split at every
// byte: it must never panic, never return a message over MaxFrame, and both
// feeds must give the same messages and the same final error class.
//
//	go test -run '^$' -fuzz FuzzConnRead -fuzztime 30s ./exchange/
func FuzzConnRead(f *testing.F) {
	add := func(frames ...ws.Frame) {
		var b bytes.Buffer
		for _, fr := range frames {
			_ = ws.WriteFrame(&b, fr)
		}
		f.Add(b.Bytes())
	}
	add(ws.NewTextFrame([]byte(`{"e":"aggTrade"}`)))
	add(ws.NewFrame(ws.OpText, false, []byte("a")), ws.NewPingFrame([]byte("p")), ws.NewFrame(ws.OpContinuation, true, []byte("b")))
	add(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "bye")))
	add(ws.NewTextFrame(make([]byte, 300)))
	f.Fuzz(func(t *testing.T, data []byte) {
		run := func(src io.Reader) ([]string, error) {
			c := newConn(discardConn{}, src, ConnConfig{MaxFrame: 256}.withDefaults())
			var msgs []string
			for {
				msg, err := c.Read(nil)
				if err != nil {
					return msgs, err
				}
				if len(msg) > 256 {
					t.Fatalf("message of %d bytes over MaxFrame", len(msg))
				}
				msgs = append(msgs, string(msg))
			}
		}
		whole, err1 := run(bytes.NewReader(data))
		split, err2 := run(oneByteReader{bytes.NewReader(data)})
		if len(whole) != len(split) {
			t.Fatalf("whole gave %d messages, split %d", len(whole), len(split))
		}
		for i := range whole {
			if whole[i] != split[i] {
				t.Fatalf("message %d differs", i)
			}
		}
		for _, sentinel := range []error{ErrClosed, ErrFrameTooLarge, ErrProtocol} {
			if errors.Is(err1, sentinel) != errors.Is(err2, sentinel) {
				t.Fatalf("errors differ: %v / %v", err1, err2)
			}
		}
	})
}

// FuzzControl checks ParseReply and IsServerShutdown against encoding/json:
// whatever they accept is valid JSON.
func FuzzControl(f *testing.F) {
	for _, s := range []string{`{"result":null,"id":1}`, `{"error":{"code":2,"msg":"x"},"id":3}`,
		`{"e":"serverShutdown","E":1}`, `{"stream":"!serverShutdown","data":{}}`, `{"e":"aggTrade"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if _, _, _, ok := ParseReply(frame); ok && !json.Valid(frame) {
			t.Fatalf("ParseReply accepted invalid JSON %q", frame)
		}
		if IsServerShutdown(frame) && !json.Valid(frame) {
			t.Fatalf("IsServerShutdown accepted invalid JSON %q", frame)
		}
	})
}
