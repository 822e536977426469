package exchange

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// ConnConfig configures a Conn. The zero value works: zero fields take the
// defaults of DefaultConnConfig(Spot), the stricter market.
type ConnConfig struct {
	MaxFrame          int           // largest message, reassembled (default 1 MiB)
	HandshakeTimeout  time.Duration // connect + TLS + upgrade (default 10 s)
	WriteTimeout      time.Duration // one frame write (default 10 s)
	MessagesPerSecond int           // messages sent per second, pongs included (default: the market's limit)
	ReadBufferSize    int           // bufio buffer of the socket (default 64 KiB)
	TLS               *tls.Config   // for wss:// (default: crypto/tls defaults)
}

// DefaultConnConfig returns the configuration for a connection to market m.
func DefaultConnConfig(m Market) ConnConfig {
	return ConnConfig{
		MaxFrame:          1 << 20,
		HandshakeTimeout:  10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MessagesPerSecond: DefaultLimits(m).MessagesPerSecond,
		ReadBufferSize:    64 << 10,
	}
}

func (c ConnConfig) withDefaults() ConnConfig {
	d := DefaultConnConfig(Spot)
	if c.MaxFrame <= 0 {
		c.MaxFrame = d.MaxFrame
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.MessagesPerSecond <= 0 {
		c.MessagesPerSecond = d.MessagesPerSecond
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = d.ReadBufferSize
	}
	return c
}

// ConnStats are a Conn's counters since Dial.
type ConnStats struct {
	Messages        uint64 // data messages returned by Read
	Bytes           uint64 // payload bytes of those messages
	EmptyMessages   uint64 // data messages of zero bytes: nothing to return, Read returned nil
	Fragments       uint64 // continuation frames reassembled
	PingsAnswered   uint64 // pings from the server answered with a pong
	PongsReceived   uint64 // every pong received, solicited or not
	PingsSent       uint64 // pings sent by Ping
	PongsMatched    uint64 // pongs that answered a ping sent by Ping
	MessagesWritten uint64 // WriteText messages sent
	WriteWaits      uint64 // WriteText and Ping calls that waited for the message rate limit
}

// Conn is one client WebSocket connection to Binance.
//
// One goroutine calls Read (and Poll, Buffered, SetReadDeadline); WriteText,
// Ping, UnansweredPing, Close and Stats may be called from any goroutine. Lock
// order: Read takes wmu only to send pongs and close replies and to note the
// pong of a ping; nothing else is locked while wmu is held.
type Conn struct {
	nc  net.Conn
	r   *bufio.Reader
	cfg ConnConfig

	// Read side, owned by the reading goroutine.
	hdr  [ws.MaxHeaderSize]byte
	ctrl [125]byte // control frame payload (RFC 6455: at most 125 bytes)
	buf  []byte    // Read's buffer when the caller passes nil
	err  error     // sticky: after any read error the stream is out of sync

	// Write side, and the client's pings, under wmu.
	wmu    sync.Mutex
	wbuf   []byte
	win    slidingWindow
	closed bool // close frame sent or socket closed
	pings  pingState

	closing atomic.Bool // Close was called: Read errors become ErrClosed
	now     func() time.Time
	sleep   func(time.Duration)

	messages, bytes, empty, fragments, pingsAnswered, pongs, written, writeWaits atomic.Uint64
	pingsSent, pongsMatched                                                      atomic.Uint64
}

// pingState follows the pings the client sends (Ping) and their pongs. A
// ping's payload is the connection's random nonce and the ping's sequence
// number, 8 bytes each, big-endian; a pong answers every ping up to the one it
// echoes (RFC 6455 lets a peer answer only the latest of several pings).
type pingState struct {
	nonce    uint64    // random per connection: a pong echoing another payload matches nothing
	sent     uint64    // sequence number of the latest ping sent (0: none yet)
	answered uint64    // sequence number of the latest ping answered
	waiting  time.Time // send time of the oldest ping without its pong; zero when none waits
	last     time.Time // send time of the latest ping
	buf      [pingPayloadSize]byte
}

const pingPayloadSize = 16

// Dial connects to url (ws:// or wss://) and completes the WebSocket
// handshake within cfg.HandshakeTimeout or ctx, whichever ends first. ctx
// bounds only the handshake, not the connection's life.
func Dial(ctx context.Context, url string, cfg ConnConfig) (*Conn, error) {
	cfg = cfg.withDefaults()
	d := ws.Dialer{Timeout: cfg.HandshakeTimeout, TLSConfig: cfg.TLS}
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("cannot dial %s: %w", url, err)
	}
	var src io.Reader = nc
	if br != nil {
		// Frames that arrived with the handshake response sit in br.
		early := make([]byte, br.Buffered())
		_, _ = io.ReadFull(br, early)
		ws.PutReader(br)
		src = io.MultiReader(bytes.NewReader(early), nc)
	}
	return newConn(nc, src, cfg), nil
}

func newConn(nc net.Conn, src io.Reader, cfg ConnConfig) *Conn {
	return &Conn{
		nc:    nc,
		r:     bufio.NewReaderSize(src, cfg.ReadBufferSize),
		cfg:   cfg,
		win:   newSlidingWindow(cfg.MessagesPerSecond, time.Second),
		pings: pingState{nonce: rand.Uint64()},
		now:   time.Now,
		sleep: time.Sleep,
	}
}

// Read reads one unit of the stream: either a complete text or binary message,
// or one control frame received between messages.
//
//   - A message of at least one byte is returned, reassembled from its
//     fragments into buf[:0] (buf's contents are overwritten). If it does not
//     fit in cap(buf), a larger buffer is allocated, up to cfg.MaxFrame; pass
//     the returned slice back (msg[:0]) to keep it. With buf == nil, Read uses
//     and keeps an internal buffer. The result is valid until the next Read.
//   - A control frame between messages is handled and Read returns (nil, nil):
//     no message. A ping is answered with a pong carrying its payload; a pong
//     is counted and, when it answers a Ping, noted (see UnansweredPing). Read
//     returns rather than wait for the next message, so a reader that polls
//     (Poll, Buffered) never blocks on a connection that delivered only a ping.
//     Control frames inside a fragmented message are handled on the way and do
//     not end the Read.
//   - An empty message (zero bytes) carries nothing to decode: Read counts it
//     (ConnStats.EmptyMessages) and returns (nil, nil) as well.
//
// So len(msg) == 0 always means "no message" and never stands for one; the
// sequence of results depends only on the bytes received, never on how they
// were split into reads.
//
// A close frame is answered with a close frame and Read returns an error
// wrapping ErrClosed with the code and reason. A message larger than MaxFrame
// returns ErrFrameTooLarge; RFC violations return ErrProtocol. Every error is
// final: the connection is out of step and must be closed.
//
// Only one goroutine may call Read. It does not allocate in steady state.
func (c *Conn) Read(buf []byte) ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	internal := buf == nil
	if internal {
		buf = c.buf
	}
	msg := buf[:0]
	inMessage := false
	for {
		h, err := ws.ReadHeaderBuffer(c.r, c.hdr[:])
		if err != nil {
			return nil, c.failRead(err)
		}
		if h.Masked || h.Rsv != 0 {
			return nil, c.failProtocol("masked frame or reserved bits from server")
		}
		if h.OpCode.IsControl() {
			if err := c.control(h); err != nil {
				return nil, err
			}
			if !inMessage {
				// Return whatever else is buffered, so that a reader that polls
				// gets its turn back and the results never depend on buffering.
				return nil, nil
			}
			continue
		}
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			if inMessage {
				return nil, c.failProtocol("new message inside a fragmented one")
			}
			inMessage = true
		case ws.OpContinuation:
			if !inMessage {
				return nil, c.failProtocol("continuation frame without a message")
			}
			c.fragments.Add(1)
		default:
			return nil, c.failProtocol("reserved opcode")
		}
		if h.Length > int64(c.cfg.MaxFrame-len(msg)) {
			c.writeCloseBestEffort(ws.StatusMessageTooBig, "")
			c.err = fmt.Errorf("cannot read message of more than %d bytes (frame of %d after %d): %w",
				c.cfg.MaxFrame, h.Length, len(msg), ErrFrameTooLarge)
			return nil, c.err
		}
		start, end := len(msg), len(msg)+int(h.Length)
		if end > cap(msg) {
			msg = c.grow(msg, end)
		}
		msg = msg[:end]
		if _, err := io.ReadFull(c.r, msg[start:]); err != nil {
			return nil, c.failRead(err)
		}
		if internal {
			c.buf = msg[:0]
		}
		if h.Fin {
			if len(msg) == 0 {
				c.empty.Add(1)
				return nil, nil
			}
			c.messages.Add(1)
			c.bytes.Add(uint64(len(msg)))
			return msg, nil
		}
	}
}

// Buffered reports how many received bytes wait in the read buffer: a reader that
// finds 0 has drained what the socket gave it, the moment to publish a batch.
func (c *Conn) Buffered() int { return c.r.Buffered() }

// Poll waits up to timeout for something to read and reports whether it came. A
// timeout consumes nothing, so unlike a read deadline it leaves the connection
// usable: the reading goroutine can do other work (gap fills, subscriptions)
// between polls. Only the goroutine that calls Read may call Poll.
func (c *Conn) Poll(timeout time.Duration) (bool, error) {
	if c.err != nil {
		return false, c.err
	}
	if c.r.Buffered() > 0 {
		return true, nil
	}
	if err := c.nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return false, c.failRead(err)
	}
	_, err := c.r.Peek(1)
	if derr := c.nc.SetReadDeadline(time.Time{}); derr != nil && err == nil {
		err = derr
	}
	if err == nil {
		return true, nil
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, nil
	}
	return false, c.failRead(err)
}

// grow returns a copy of msg with capacity at least n: doubling, capped at
// MaxFrame (n <= MaxFrame is checked by the caller).
func (c *Conn) grow(msg []byte, n int) []byte {
	newCap := max(n, 2*cap(msg), 4096)
	newCap = min(newCap, max(n, c.cfg.MaxFrame))
	bigger := make([]byte, len(msg), newCap)
	copy(bigger, msg)
	return bigger
}

// control handles one control frame.
func (c *Conn) control(h ws.Header) error {
	if !h.Fin || h.Length > int64(len(c.ctrl)) {
		return c.failProtocol("fragmented or oversized control frame")
	}
	p := c.ctrl[:h.Length]
	if _, err := io.ReadFull(c.r, p); err != nil {
		return c.failRead(err)
	}
	switch h.OpCode {
	case ws.OpPing:
		c.wmu.Lock()
		var err error
		if !c.closed {
			c.win.record(c.now()) // on spot, pongs count against the message limit
			err = c.writeFrame(ws.OpPong, p)
		}
		c.wmu.Unlock()
		if err != nil {
			return c.failRead(fmt.Errorf("cannot answer ping: %w", err))
		}
		c.pingsAnswered.Add(1)
	case ws.OpPong:
		c.pongs.Add(1)
		c.pong(p)
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(p)
		reply := code
		if code.Empty() {
			reply = ws.StatusNoStatusRcvd // sent back as an empty body
		}
		c.writeCloseBestEffort(reply, "")
		_ = c.nc.Close()
		c.err = fmt.Errorf("server closed the connection with code %d, reason %q: %w", code, reason, ErrClosed)
		return c.err
	default:
		return c.failProtocol("reserved control opcode")
	}
	return nil
}

func (c *Conn) failRead(err error) error {
	if c.closing.Load() {
		c.err = fmt.Errorf("cannot read: connection closed locally: %w", ErrClosed)
	} else {
		c.err = fmt.Errorf("cannot read websocket frame: %w", err)
	}
	return c.err
}

func (c *Conn) failProtocol(what string) error {
	c.writeCloseBestEffort(ws.StatusProtocolError, "")
	c.err = fmt.Errorf("cannot read websocket frame: %s: %w", what, ErrProtocol)
	return c.err
}

// writeCloseBestEffort sends a close frame once; errors are ignored because
// the connection is being abandoned anyway.
func (c *Conn) writeCloseBestEffort(code ws.StatusCode, reason string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	var body []byte
	if code != ws.StatusNoStatusRcvd {
		body = ws.NewCloseFrameBody(code, reason)
	}
	_ = c.writeFrame(ws.OpClose, body)
}

// writeFrame sends one masked, final frame. c.wmu must be held.
func (c *Conn) writeFrame(op ws.OpCode, p []byte) error {
	b := append(c.wbuf[:0], 0x80|byte(op))
	const maskBit = 0x80
	switch n := len(p); {
	case n <= 125:
		b = append(b, maskBit|byte(n))
	case n <= 0xffff:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, p...)
	ws.Cipher(b[start:], mask, 0)
	c.wbuf = b
	// Real time: c.now is the rate window's clock, which tests replace.
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout)); err != nil {
		return err
	}
	_, err := c.nc.Write(b)
	return err
}

// admit waits until the message window lets one more message out, records it
// and returns the time with c.wmu held; or returns ErrClosed, without wmu, once
// the connection is closed.
func (c *Conn) admit() (time.Time, error) {
	waited := false
	for {
		c.wmu.Lock()
		if c.closed {
			c.wmu.Unlock()
			return time.Time{}, ErrClosed
		}
		now := c.now()
		d := c.win.wait(now)
		if d <= 0 {
			c.win.record(now)
			return now, nil
		}
		c.wmu.Unlock()
		if !waited {
			waited = true
			c.writeWaits.Add(1)
		}
		c.sleep(d)
	}
}

// WriteText sends msg as one text frame (a control message such as
// SUBSCRIBE). It waits rather than send more than cfg.MessagesPerSecond
// messages in any one-second window (pings and pongs included). Safe for
// concurrent use with Read and other writers.
func (c *Conn) WriteText(msg []byte) error {
	if _, err := c.admit(); err != nil {
		return fmt.Errorf("cannot write message: %w", err)
	}
	err := c.writeFrame(ws.OpText, msg)
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("cannot write message: %w", err)
	}
	c.written.Add(1)
	return nil
}

// Ping sends a ping with a fresh payload (the connection's nonce and the next
// sequence number), within the message rate limit like WriteText: on spot a
// ping counts against the 5 messages per second as pongs and SUBSCRIBEs do.
// Read notes the pong that echoes it; UnansweredPing tells whether it came.
// A reader uses the pair as a cheap liveness check of the server:
//
//	if sent, ok := conn.UnansweredPing(); ok {
//		if time.Since(sent) > pongTimeout { /* dead: close and reconnect */ }
//	} else if time.Since(lastPing) >= pingInterval {
//		err = conn.Ping()
//	}
//
// Safe for concurrent use with Read and other writers. It does not allocate.
func (c *Conn) Ping() error {
	now, err := c.admit()
	if err != nil {
		return fmt.Errorf("cannot send ping: %w", err)
	}
	st := &c.pings
	seq := st.sent + 1
	binary.BigEndian.PutUint64(st.buf[:8], st.nonce)
	binary.BigEndian.PutUint64(st.buf[8:], seq)
	err = c.writeFrame(ws.OpPing, st.buf[:])
	if err == nil {
		st.sent, st.last = seq, now
		if st.waiting.IsZero() {
			st.waiting = now
		}
	}
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("cannot send ping: %w", err)
	}
	c.pingsSent.Add(1)
	return nil
}

// UnansweredPing reports whether a ping sent by Ping still waits for its pong
// and, if so, when the oldest such ping was sent (by the connection's clock,
// time.Now). A pong answers the ping it echoes and every earlier one; when it
// answers only some of several pings in flight, the wait of the rest counts
// from the latest ping. Safe for concurrent use.
func (c *Conn) UnansweredPing() (sent time.Time, ok bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.pings.waiting, !c.pings.waiting.IsZero()
}

// pong notes a pong whose payload p echoes a ping sent by Ping.
func (c *Conn) pong(p []byte) {
	if len(p) != pingPayloadSize {
		return
	}
	nonce, seq := binary.BigEndian.Uint64(p[:8]), binary.BigEndian.Uint64(p[8:])
	c.wmu.Lock()
	st := &c.pings
	matched := nonce == st.nonce && st.answered < seq && seq <= st.sent
	if matched {
		st.answered = seq
		if seq == st.sent {
			st.waiting = time.Time{}
		} else {
			st.waiting = st.last
		}
	}
	c.wmu.Unlock()
	if matched {
		c.pongsMatched.Add(1)
	}
}

// SetReadDeadline sets the deadline of Read; a Read that times out returns a
// (final) error, so use it as a liveness timeout, not a poll.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// Close sends a normal-closure close frame (best effort) and closes the
// socket. A concurrent Read returns an error wrapping ErrClosed. Idempotent.
func (c *Conn) Close() error {
	c.closing.Store(true)
	c.wmu.Lock()
	wasClosed := c.closed
	if !c.closed {
		c.closed = true
		_ = c.writeFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	}
	c.wmu.Unlock()
	err := c.nc.Close()
	if wasClosed {
		return nil
	}
	return err
}

// Stats returns the counters; safe for concurrent use.
func (c *Conn) Stats() ConnStats {
	return ConnStats{
		Messages:        c.messages.Load(),
		Bytes:           c.bytes.Load(),
		EmptyMessages:   c.empty.Load(),
		Fragments:       c.fragments.Load(),
		PingsAnswered:   c.pingsAnswered.Load(),
		PongsReceived:   c.pongs.Load(),
		PingsSent:       c.pingsSent.Load(),
		PongsMatched:    c.pongsMatched.Load(),
		MessagesWritten: c.written.Load(),
		WriteWaits:      c.writeWaits.Load(),
	}
}
