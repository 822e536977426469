package exchange

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsServer starts a gobwas/ws server on 127.0.0.1:0 that runs handle on every
// upgraded connection, and returns its raw-stream URL.
func wsServer(t testing.TB, handle func(conn net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { ln.Close() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				if _, err := ws.Upgrade(conn); err != nil {
					return
				}
				handle(conn)
			}()
		}
	}()
	return RawURL(Futures, "ws://"+ln.Addr().String())
}

func dialTest(t testing.TB, url string, cfg ConnConfig) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readClientFrame reads one frame sent by the client and unmasks it; it
// reports whether the frame was masked, as RFC 6455 requires.
func readClientFrame(conn net.Conn) (ws.Frame, bool, error) {
	var f ws.Frame
	h, err := ws.ReadHeader(conn)
	if err != nil {
		return f, false, err
	}
	if h.Length > 1<<20 {
		return f, false, fmt.Errorf("client frame of %d bytes", h.Length)
	}
	f.Header, f.Payload = h, make([]byte, h.Length)
	if _, err := io.ReadFull(conn, f.Payload); err != nil {
		return f, false, err
	}
	masked := h.Masked
	if masked {
		f = ws.UnmaskFrameInPlace(f)
	}
	return f, masked, nil
}

func writeFrames(t testing.TB, conn net.Conn, frames ...ws.Frame) {
	for _, f := range frames {
		if err := ws.WriteFrame(conn, f); err != nil {
			t.Errorf("server write: %v", err)
			return
		}
	}
}

func TestConnReadMessages(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 7000) // 70,000 bytes: 64-bit length, buffer growth
	msgs := [][]byte{[]byte(`{"e":"aggTrade"}`), big, []byte("bin\x00ary"), bytes.Repeat([]byte("x"), 300), {}}
	url := wsServer(t, func(conn net.Conn) {
		writeFrames(t, conn, ws.NewTextFrame(msgs[0]), ws.NewTextFrame(msgs[1]), ws.NewBinaryFrame(msgs[2]),
			ws.NewTextFrame(msgs[3]), ws.NewTextFrame(msgs[4]))
		_, _, _ = readClientFrame(conn) // wait for the client's close
	})
	c := dialTest(t, url, ConnConfig{})
	// Internal buffer for the first three, a caller's small buffer after.
	for i := range 3 {
		got, err := c.Read(nil)
		if err != nil || !bytes.Equal(got, msgs[i]) {
			t.Fatalf("message %d: %d bytes, %v", i, len(got), err)
		}
	}
	mine := make([]byte, 0, 16)
	got, err := c.Read(mine)
	if err != nil || !bytes.Equal(got, msgs[3]) {
		t.Fatalf("message 3: %q, %v", got, err)
	}
	got, err = c.Read(got[:0])
	if err != nil || got != nil {
		t.Fatalf("empty message: %q, %v; want no message (nil)", got, err)
	}
	s := c.Stats()
	var total int
	for _, m := range msgs {
		total += len(m)
	}
	if s.Messages != 4 || s.EmptyMessages != 1 || s.Bytes != uint64(total) || s.Fragments != 0 {
		t.Errorf("stats %+v, want 4 messages of %d bytes and 1 empty", s, total)
	}
}

// TestConnReadControlFrames pins Read's contract around control frames: one
// no-message result (nil, nil) per control frame between messages and per empty
// message, none for control frames inside a fragmented message, whatever else is
// buffered and however the bytes are split.
func TestConnReadControlFrames(t *testing.T) {
	frames := func(fs ...ws.Frame) []byte {
		var b bytes.Buffer
		for _, f := range fs {
			if err := ws.WriteFrame(&b, f); err != nil {
				t.Fatal(err)
			}
		}
		return b.Bytes()
	}
	none := noMessage
	tests := []struct {
		name   string
		stream []byte
		want   []string
		empty  uint64
	}{
		// The fuzzer's findings: a lone ping or pong, then a truncated header.
		{"ping then partial header", []byte("\x89\x0100"), []string{none}, 0},
		{"empty ping then partial header", []byte("\x89\x000"), []string{none}, 0},
		{"pong then partial header", []byte("\x8a\x000"), []string{none}, 0},
		{"ping before a message", frames(ws.NewPingFrame([]byte("p")), ws.NewTextFrame([]byte("a"))), []string{none, "a"}, 0},
		{"pong between messages", frames(ws.NewTextFrame([]byte("a")), ws.NewPongFrame(nil), ws.NewTextFrame([]byte("b"))),
			[]string{"a", none, "b"}, 0},
		{"two pings in a row", frames(ws.NewPingFrame(nil), ws.NewPingFrame(nil), ws.NewBinaryFrame([]byte("c"))),
			[]string{none, none, "c"}, 0},
		{"ping and pong inside a fragmented message", frames(ws.NewFrame(ws.OpText, false, []byte("a")),
			ws.NewPingFrame(nil), ws.NewPongFrame(nil), ws.NewFrame(ws.OpContinuation, true, []byte("b"))), []string{"ab"}, 0},
		{"empty message", frames(ws.NewTextFrame(nil), ws.NewTextFrame([]byte("d"))), []string{none, "d"}, 1},
		{"empty fragmented message", frames(ws.NewFrame(ws.OpText, false, nil), ws.NewFrame(ws.OpContinuation, true, nil)),
			[]string{none}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for feed, src := range map[string]io.Reader{
				"whole":        bytes.NewReader(tt.stream),
				"byte by byte": oneByteReader{bytes.NewReader(tt.stream)},
			} {
				c := newConn(discardConn{}, src, ConnConfig{}.withDefaults())
				got, err := readAll(t, c, c.cfg.MaxFrame)
				if !slices.Equal(got, tt.want) {
					t.Errorf("%s: results %q, want %q", feed, got, tt.want)
				}
				if errors.Is(err, ErrProtocol) || errors.Is(err, ErrClosed) || errors.Is(err, ErrFrameTooLarge) {
					t.Errorf("%s: final error %v, want the end of the stream", feed, err)
				}
				if s := c.Stats(); s.EmptyMessages != tt.empty {
					t.Errorf("%s: %d empty messages, want %d", feed, s.EmptyMessages, tt.empty)
				}
			}
		})
	}
}

func TestConnFragmentedAndPing(t *testing.T) {
	pingPayload := bytes.Repeat([]byte("p"), 125) // largest control payload
	pong := make(chan []byte, 1)
	url := wsServer(t, func(conn net.Conn) {
		writeFrames(t, conn,
			ws.NewFrame(ws.OpText, false, []byte("hel")),
			ws.NewPingFrame(pingPayload), // control frames may interleave fragments
			ws.NewFrame(ws.OpContinuation, false, []byte("lo")),
			ws.NewPongFrame([]byte("unsolicited")),
			ws.NewFrame(ws.OpContinuation, true, []byte(" world")),
			ws.NewTextFrame([]byte("next")))
		f, masked, err := readClientFrame(conn)
		if err != nil || !masked || f.Header.OpCode != ws.OpPong {
			t.Errorf("server expected a masked pong: %+v, masked %v, %v", f.Header, masked, err)
		}
		pong <- f.Payload
		_, _, _ = readClientFrame(conn)
	})
	c := dialTest(t, url, ConnConfig{})
	got, err := c.Read(nil)
	if err != nil || string(got) != "hello world" {
		t.Fatalf("reassembled %q, %v", got, err)
	}
	if got, err := c.Read(nil); err != nil || string(got) != "next" {
		t.Fatalf("next message %q, %v", got, err)
	}
	if p := <-pong; !bytes.Equal(p, pingPayload) {
		t.Errorf("pong payload %q, want the ping's", p)
	}
	s := c.Stats()
	if s.PingsAnswered != 1 || s.PongsReceived != 1 || s.Fragments != 2 || s.Messages != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestConnServerClose(t *testing.T) {
	reply := make(chan ws.Frame, 1)
	url := wsServer(t, func(conn net.Conn) {
		writeFrames(t, conn, ws.NewTextFrame([]byte("last")),
			ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "server shutdown")))
		f, _, err := readClientFrame(conn)
		if err != nil {
			t.Errorf("server: no close reply: %v", err)
		}
		reply <- f
	})
	c := dialTest(t, url, ConnConfig{})
	if got, err := c.Read(nil); err != nil || string(got) != "last" {
		t.Fatalf("%q, %v", got, err)
	}
	_, err := c.Read(nil)
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "1001") || !strings.Contains(err.Error(), "server shutdown") {
		t.Fatalf("Read after close frame: %v", err)
	}
	if _, err2 := c.Read(nil); err2 != err {
		t.Errorf("second Read: %v, want the same error", err2)
	}
	f := <-reply
	if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != ws.StatusGoingAway {
		t.Errorf("close reply %+v code %d, want close 1001", f.Header, code)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close after server close: %v", err)
	}
	if err := c.WriteText([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteText after close: %v", err)
	}
}

func TestConnFrameTooLarge(t *testing.T) {
	tests := []struct {
		name   string
		frames []ws.Frame
	}{
		{"single", []ws.Frame{ws.NewTextFrame(make([]byte, 1025))}},
		{"fragmented", []ws.Frame{
			ws.NewFrame(ws.OpText, false, make([]byte, 600)),
			ws.NewFrame(ws.OpContinuation, true, make([]byte, 600)),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			closeCode := make(chan ws.StatusCode, 1)
			url := wsServer(t, func(conn net.Conn) {
				writeFrames(t, conn, ws.NewTextFrame(make([]byte, 1024))) // exactly MaxFrame: fine
				writeFrames(t, conn, tt.frames...)
				f, _, _ := readClientFrame(conn)
				code, _ := ws.ParseCloseFrameData(f.Payload)
				closeCode <- code
			})
			c := dialTest(t, url, ConnConfig{MaxFrame: 1024})
			if got, err := c.Read(nil); err != nil || len(got) != 1024 {
				t.Fatalf("message of MaxFrame bytes: %d, %v", len(got), err)
			}
			_, err := c.Read(nil)
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("got %v, want ErrFrameTooLarge", err)
			}
			if _, err := c.Read(nil); !errors.Is(err, ErrFrameTooLarge) {
				t.Errorf("connection still usable: %v", err)
			}
			if code := <-closeCode; code != ws.StatusMessageTooBig {
				t.Errorf("close code sent %d, want 1009", code)
			}
		})
	}
}

func TestConnProtocolErrors(t *testing.T) {
	masked := ws.MaskFrameWith(ws.NewTextFrame([]byte("hi")), [4]byte{1, 2, 3, 4})
	tests := []struct {
		name   string
		frames []ws.Frame
	}{
		{"masked", []ws.Frame{masked}},
		{"continuation first", []ws.Frame{ws.NewFrame(ws.OpContinuation, true, []byte("x"))}},
		{"text inside fragmented", []ws.Frame{ws.NewFrame(ws.OpText, false, []byte("a")), ws.NewTextFrame([]byte("b"))}},
		{"fragmented ping", []ws.Frame{ws.NewFrame(ws.OpPing, false, nil)}},
		{"reserved opcode", []ws.Frame{ws.NewFrame(ws.OpCode(0x3), true, []byte("x"))}},
		{"rsv bits", []ws.Frame{{Header: ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpText, Length: 1}, Payload: []byte("x")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := wsServer(t, func(conn net.Conn) {
				writeFrames(t, conn, tt.frames...)
				_, _, _ = readClientFrame(conn)
			})
			c := dialTest(t, url, ConnConfig{})
			if _, err := c.Read(nil); !errors.Is(err, ErrProtocol) {
				t.Errorf("got %v, want ErrProtocol", err)
			}
		})
	}
}

func TestConnWriteTextRateLimit(t *testing.T) {
	const n = 7
	received := make(chan []string, 1)
	url := wsServer(t, func(conn net.Conn) {
		var got []string
		for range n {
			f, masked, err := readClientFrame(conn)
			if err != nil || !masked || f.Header.OpCode != ws.OpText {
				t.Errorf("server read %+v masked %v: %v", f.Header, masked, err)
				break
			}
			got = append(got, string(f.Payload))
		}
		received <- got
		_, _, _ = readClientFrame(conn)
	})
	c := dialTest(t, url, ConnConfig{MessagesPerSecond: 3})
	clk := newFakeClock(time.Unix(1_700_000_000, 0))
	c.wmu.Lock()
	c.now, c.sleep = clk.now, clk.sleep
	c.wmu.Unlock()
	var want []string
	for i := range n {
		msg := SubscribeMessage(nil, "SUBSCRIBE", int64(i), []string{"btcusdt@aggTrade"})
		want = append(want, string(msg))
		if err := c.WriteText(msg); err != nil {
			t.Fatal(err)
		}
	}
	// At a frozen clock: 3 go at once, the 4th waits a full second, 5 and 6
	// follow (their window slots date from t0), the 7th waits again.
	if s := clk.recorded(); !slices.Equal(s, []time.Duration{time.Second, time.Second}) {
		t.Errorf("sleeps %v, want [1s 1s]", s)
	}
	if got := <-received; !slices.Equal(got, want) {
		t.Errorf("server received %q", got)
	}
	if s := c.Stats(); s.MessagesWritten != n || s.WriteWaits != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestConnCloseUnblocksRead(t *testing.T) {
	closeCode := make(chan ws.StatusCode, 1)
	url := wsServer(t, func(conn net.Conn) {
		f, _, _ := readClientFrame(conn)
		code, _ := ws.ParseCloseFrameData(f.Payload)
		closeCode <- code
	})
	c := dialTest(t, url, ConnConfig{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(nil)
		errc <- err
	}()
	// Whether Read is already blocked or starts after Close, it must end with ErrClosed.
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("Read interrupted by Close: %v, want ErrClosed", err)
	}
	if code := <-closeCode; code != ws.StatusNormalClosure {
		t.Errorf("close code %d, want 1000", code)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestConnReadDeadline(t *testing.T) {
	url := wsServer(t, func(conn net.Conn) { _, _, _ = readClientFrame(conn) })
	c := dialTest(t, url, ConnConfig{})
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(nil)
	var ne net.Error
	if err == nil || errors.Is(err, ErrClosed) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Read past deadline: %v, want a timeout", err)
	}
}

// TestDialEarlyFrames: frames sent in the same packet as the handshake
// response land in the dialer's buffer and must not be lost.
func TestDialEarlyFrames(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			t.Errorf("server: %v", err)
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		var out bytes.Buffer
		fmt.Fprintf(&out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(h[:]))
		_ = ws.WriteFrame(&out, ws.NewTextFrame([]byte("early one")))
		_ = ws.WriteFrame(&out, ws.NewTextFrame([]byte("early two")))
		_, _ = conn.Write(out.Bytes())
		_ = ws.WriteFrame(conn, ws.NewTextFrame([]byte("later")))
		_, _, _ = readClientFrame(conn)
	}()
	c := dialTest(t, "ws://"+ln.Addr().String()+"/ws", ConnConfig{})
	for _, want := range []string{"early one", "early two", "later"} {
		if got, err := c.Read(nil); err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	c.Close()
	<-done
}

func TestDialFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go srv.Serve(ln)
	defer srv.Close()
	_, err = Dial(context.Background(), "ws://"+ln.Addr().String()+"/ws", ConnConfig{HandshakeTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "cannot dial") {
		t.Errorf("Dial to a non-WebSocket server: %v", err)
	}
}

// feedServer writes frame to every connection until the client goes away.
func feedServer(t testing.TB, frame []byte) string {
	var batch []byte
	for range 64 {
		batch = append(batch, frame...)
	}
	return wsServer(t, func(conn net.Conn) {
		for {
			if _, err := conn.Write(batch); err != nil {
				return
			}
		}
	})
}

func compiledText(t testing.TB, payload []byte) []byte {
	b, err := ws.CompileFrame(ws.NewTextFrame(payload))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var sampleFrame = []byte(`{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1634944096633,"a":966492862,"s":"BTCUSDT","p":"60759.60","q":"0.008","f":1111480471,"l":1111480471,"T":1634944096633,"m":false}}`)

func TestConnReadAllocs(t *testing.T) {
	url := feedServer(t, compiledText(t, sampleFrame))
	c := dialTest(t, url, ConnConfig{})
	for range 10 { // warm up: the internal buffer grows once
		if _, err := c.Read(nil); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		msg, err := c.Read(nil)
		if err != nil || len(msg) != len(sampleFrame) {
			panic(fmt.Sprintf("Read: %d bytes, %v", len(msg), err))
		}
	})
	if allocs != 0 {
		t.Errorf("Read allocates %.2f times per message, want 0", allocs)
	}
}

// BenchmarkConnRead compares Conn.Read with gobwas/ws's convenience reader
// (wsutil.ReadServerData, which allocates per message) on a loopback feed of
// one recorded-size combined aggTrade frame.
//
//	go test -run '^$' -bench ConnRead -benchtime 2s ./exchange/
func BenchmarkConnRead(b *testing.B) {
	frame := sampleFrame
	if raw, err := os.ReadFile(sharedDataPath("futures-ws-2021-07-22.ndjson")); err == nil {
		if i := bytes.Index(raw, []byte(`@aggTrade"`)); i >= 0 {
			start := bytes.LastIndexByte(raw[:i], '\n') + 1
			end := start + bytes.IndexByte(raw[start:], '\n')
			frame = raw[start:end]
		}
	}
	url := feedServer(b, compiledText(b, frame))
	b.Run("impl=conn", func(b *testing.B) {
		c := dialTest(b, url, ConnConfig{})
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Read(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=wsutil", func(b *testing.B) {
		nc, br, _, err := ws.Dial(context.Background(), url)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		var r = bufio.NewReaderSize(nc, 64<<10)
		if br != nil {
			r = br
		}
		rw := struct {
			io.Reader
			io.Writer
		}{r, nc}
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := wsutil.ReadServerData(rw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func sharedDataPath(name string) string {
	return filepath.Join("..", "..", "shared", "data", "binance", name)
}

// TestConnPingAlone: a ping with nothing behind it is answered and Read returns at
// once with no message, so a polling reader is not held until the next message.
func TestConnPingAlone(t *testing.T) {
	next := make(chan struct{})
	url := wsServer(t, func(conn net.Conn) {
		writeFrames(t, conn, ws.NewPingFrame([]byte("hb")))
		f, _, err := readClientFrame(conn)
		if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "hb" {
			t.Errorf("want the pong first: %+v %q %v", f.Header, f.Payload, err)
		}
		<-next
		writeFrames(t, conn, ws.NewTextFrame([]byte("trade")))
		_, _, _ = readClientFrame(conn)
	})
	c := dialTest(t, url, ConnConfig{})
	if ok, err := c.Poll(5 * time.Second); !ok || err != nil {
		t.Fatalf("poll: %v %v", ok, err)
	}
	got, err := c.Read(nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("read after a lone ping: %q, %v", got, err)
	}
	close(next)
	if ok, err := c.Poll(5 * time.Second); !ok || err != nil {
		t.Fatalf("poll: %v %v", ok, err)
	}
	if got, err := c.Read(nil); err != nil || string(got) != "trade" {
		t.Fatalf("next message %q, %v", got, err)
	}
	if s := c.Stats(); s.PingsAnswered != 1 {
		t.Errorf("stats %+v", s)
	}
}
