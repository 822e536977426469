package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
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

// chunkReader hands out the stream in reads of varying sizes (1 to 16 bytes,
// a sequence seeded by the stream's length), between the two extremes of
// whole and byte by byte.
type chunkReader struct {
	r    io.Reader
	next uint32
}

func (c *chunkReader) Read(p []byte) (int, error) {
	c.next = c.next*1103515245 + 12345
	if n := int(c.next>>16)%16 + 1; len(p) > n {
		p = p[:n]
	}
	return c.r.Read(p)
}

// noMessage marks a Read that returned no message (a control frame between
// messages, or an empty message) in a readAll result.
const noMessage = "<none>"

// readAll reads c until its (final) error and returns every result in order,
// a message as its text, no message as noMessage. It fails on a result that
// breaks Read's contract: an empty but non-nil message, or one over maxFrame.
func readAll(t *testing.T, c *Conn, maxFrame int) ([]string, error) {
	var results []string
	for {
		msg, err := c.Read(nil)
		if err != nil {
			if msg != nil {
				t.Fatalf("Read returned %q with error %v", msg, err)
			}
			return results, err
		}
		switch {
		case msg == nil:
			results = append(results, noMessage)
		case len(msg) == 0:
			t.Fatal("Read returned an empty non-nil message: an empty result must be nil")
		case len(msg) > maxFrame:
			t.Fatalf("message of %d bytes over MaxFrame", len(msg))
		default:
			results = append(results, string(msg))
		}
	}
}

// FuzzConnRead feeds arbitrary server bytes to Read whole, split at every byte
// and split at varying points: it must never panic, never return a message over
// MaxFrame or an empty non-nil one, and every feed must give the same results in
// the same order (messages and no-message returns alike: Read's results depend
// only on the bytes, never on how they arrive) and the same final error class.
// Regression inputs live in testdata/fuzz/FuzzConnRead.
//
//	go test -run '^$' -fuzz '^FuzzConnRead$' -fuzztime 30s ./exchange/
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
	add(ws.NewPingFrame([]byte("1")), ws.NewTextFrame([]byte("x")), ws.NewPongFrame(nil), ws.NewTextFrame(nil), ws.NewTextFrame([]byte("y")))
	const maxFrame = 256
	f.Fuzz(func(t *testing.T, data []byte) {
		run := func(src io.Reader) ([]string, error) {
			return readAll(t, newConn(discardConn{}, src, ConnConfig{MaxFrame: maxFrame}.withDefaults()), maxFrame)
		}
		whole, err1 := run(bytes.NewReader(data))
		for name, src := range map[string]io.Reader{
			"byte by byte": oneByteReader{bytes.NewReader(data)},
			"chunked":      &chunkReader{r: bytes.NewReader(data), next: uint32(len(data))},
		} {
			split, err2 := run(src)
			if !slices.Equal(whole, split) {
				t.Fatalf("whole gave %q, %s %q", whole, name, split)
			}
			for _, sentinel := range []error{ErrClosed, ErrFrameTooLarge, ErrProtocol} {
				if errors.Is(err1, sentinel) != errors.Is(err2, sentinel) {
					t.Fatalf("errors differ: whole %v, %s %v", err1, name, err2)
				}
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
