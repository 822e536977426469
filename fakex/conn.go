package fakex

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// Writer marks: what the writer does when it reaches an offset of its batch.
const (
	markStall uint8 = iota
	markDrop
	markShutdown
	markClose
)

type mark struct {
	off  int
	kind uint8
	dur  time.Duration
}

// conn is one WebSocket client. Ownership: the producer and the reader append
// to pending under mu; the writer goroutine alone swaps pending out and writes
// it, so frames reach the socket in the order they were queued and every write
// carries as many frames as queued since the last one.
type conn struct {
	s        *Server
	nc       net.Conn
	br       *bufio.Reader
	combined bool // wrap events in {"stream":..,"data":..}
	noAgg    bool // futures path without /market: aggTrades are never delivered

	mu            sync.Mutex
	pending       []byte
	pendingFrames int64
	marks         []mark
	subs          []uint64 // bitset of stream ids
	names         []string // subscriptions in order, for LIST_SUBSCRIPTIONS
	count         int64    // market frames queued (fault counters run on it)
	dead          bool     // queue nothing more
	stalled       bool     // a stall mark is pending: the queue is unbounded
	writing       bool
	awaitPong     []byte
	pingSeq       int64

	wake, drained chan struct{}
	done          chan struct{}
	closeOnce     sync.Once

	spare      []byte
	spareMarks []mark
	msgTimes   []time.Time // ring of the last incoming message times
	msgNext    int
}

func newConn(s *Server, nc net.Conn, br *bufio.Reader) *conn {
	return &conn{
		s: s, nc: nc, br: br,
		wake:     make(chan struct{}, 1),
		drained:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		msgTimes: make([]time.Time, s.msgLimit),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// appendHeader appends an unmasked, final server frame header.
func appendHeader(dst []byte, op ws.OpCode, n int) []byte {
	b0 := 0x80 | byte(op)
	switch {
	case n < 126:
		return append(dst, b0, byte(n))
	case n < 1<<16:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// queueLocked appends one frame; c.mu is held.
func (c *conn) queueLocked(op ws.OpCode, payload []byte) {
	c.pending = appendHeader(c.pending, op, len(payload))
	c.pending = append(c.pending, payload...)
}

// queueControl queues a reply from the reader side and wakes the writer.
func (c *conn) queueControl(op ws.OpCode, payload []byte, then uint8) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.queueLocked(op, payload)
	if then == markClose {
		c.marks = append(c.marks, mark{off: len(c.pending), kind: markClose})
		c.dead = true
	}
	c.mu.Unlock()
	signal(c.wake)
}

// closePayload is a close frame body: status code and reason.
func closePayload(code ws.StatusCode, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// close ends the connection once; safe from any goroutine.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.dead = true
		c.mu.Unlock()
		close(c.done)
		_ = c.nc.Close()
		c.s.removeConn(c)
		c.s.stats.connsClosed.Add(1)
	})
}

// writeLoop is the writer goroutine.
func (c *conn) writeLoop() {
	defer c.close()
	ping := time.NewTicker(c.s.cfg.PingEvery)
	defer ping.Stop()
	var shutdown <-chan time.Time
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		case <-ping.C:
			c.sendPing()
		case <-shutdown:
			shutdown = nil
			c.queueControl(ws.OpClose, closePayload(ws.StatusGoingAway, "server shutdown"), markClose)
		}
		for {
			c.mu.Lock()
			if len(c.pending) == 0 {
				c.writing = false
				c.mu.Unlock()
				break
			}
			buf, marks, frames := c.pending, c.marks, c.pendingFrames
			c.pending, c.marks, c.pendingFrames = c.spare[:0], c.spareMarks[:0], 0
			c.writing = true
			c.mu.Unlock()
			ok := c.flush(buf, marks, &shutdown)
			c.s.stats.framesSent.Add(frames)
			c.s.stats.bytesSent.Add(int64(len(buf)))
			c.spare, c.spareMarks = buf[:0], marks[:0]
			if cap(c.spare) > 16<<20 { // let a stall's backlog go
				c.spare = nil
			}
			signal(c.drained)
			if !ok {
				return
			}
		}
	}
}

// flush writes buf, acting on marks at their offsets; false: the connection ended.
func (c *conn) flush(buf []byte, marks []mark, shutdown *<-chan time.Time) bool {
	off := 0
	for _, m := range marks {
		if _, err := c.nc.Write(buf[off:m.off]); err != nil {
			return false
		}
		off = m.off
		switch m.kind {
		case markStall:
			t := time.NewTimer(m.dur)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return false
			}
			c.mu.Lock()
			c.stalled = false
			c.mu.Unlock()
		case markDrop:
			if tc, ok := c.nc.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // abrupt: RST, no close frame
			}
			return false
		case markShutdown:
			*shutdown = time.After(c.s.cfg.ShutdownGrace)
		case markClose:
			return false
		}
	}
	_, err := c.nc.Write(buf[off:])
	return err == nil
}

// sendPing queues a ping and arms the pong timeout for the oldest unanswered one.
func (c *conn) sendPing() {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.pingSeq++
	payload := strconv.AppendInt(nil, c.pingSeq, 10)
	c.queueLocked(ws.OpPing, payload)
	arm := c.awaitPong == nil
	if arm {
		c.awaitPong = payload
	}
	c.mu.Unlock()
	signal(c.wake)
	if arm {
		time.AfterFunc(c.s.cfg.PongTimeout, func() {
			c.mu.Lock()
			late := c.awaitPong != nil && bytes.Equal(c.awaitPong, payload)
			c.mu.Unlock()
			if late {
				c.s.stats.pongTimeouts.Add(1)
				c.close()
			}
		})
	}
}

// tooFast records one incoming message and reports whether the connection
// exceeded its messages-per-second limit.
func (c *conn) tooFast(now time.Time) bool {
	oldest := c.msgTimes[c.msgNext]
	c.msgTimes[c.msgNext] = now
	c.msgNext++
	if c.msgNext == len(c.msgTimes) {
		c.msgNext = 0
	}
	return !oldest.IsZero() && now.Sub(oldest) < time.Second
}

// readLoop is the reader goroutine: control messages, pings, pongs, close.
func (c *conn) readLoop() {
	var payload []byte
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil || h.Length > 64<<10 {
			c.close()
			return
		}
		if cap(payload) < int(h.Length) {
			payload = make([]byte, h.Length)
		}
		payload = payload[:h.Length]
		if _, err := io.ReadFull(c.br, payload); err != nil {
			c.close()
			return
		}
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		if h.OpCode != ws.OpClose && c.tooFast(time.Now()) {
			c.s.stats.connsTooFast.Add(1)
			c.queueControl(ws.OpClose, closePayload(ws.StatusPolicyViolation, "Too many requests"), markClose)
			return // the writer closes once the close frame is out
		}
		switch h.OpCode {
		case ws.OpText:
			c.handleRequest(payload)
		case ws.OpPing:
			if c.s.cfg.Faults.IgnorePings {
				c.s.fault("ignorepings")
				continue
			}
			c.queueControl(ws.OpPong, append([]byte(nil), payload...), 0)
		case ws.OpPong:
			c.mu.Lock()
			if c.awaitPong != nil && bytes.Equal(c.awaitPong, payload) {
				c.awaitPong = nil
			}
			c.mu.Unlock()
		case ws.OpClose:
			reply := []byte(nil)
			if len(payload) >= 2 {
				reply = append(reply, payload[:2]...)
			}
			c.queueControl(ws.OpClose, reply, markClose)
			return
		}
	}
}

type request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	ID     json.RawMessage `json:"id"`
}

func errorReply(code int, msg string, id json.RawMessage) []byte {
	b, _ := json.Marshal(struct {
		Error struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"error"`
		ID json.RawMessage `json:"id"`
	}{Error: struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}{code, msg}, ID: id})
	return b
}

// handleRequest answers one SUBSCRIBE, UNSUBSCRIBE or LIST_SUBSCRIPTIONS.
func (c *conn) handleRequest(msg []byte) {
	c.s.stats.requests.Add(1)
	null := json.RawMessage("null")
	var req request
	if err := json.Unmarshal(msg, &req); err != nil {
		c.queueControl(ws.OpText, errorReply(2, "Invalid JSON: "+err.Error(), null), 0)
		return
	}
	id := req.ID
	if len(id) == 0 {
		id = null
	}
	var params []string
	if req.Method == "SUBSCRIBE" || req.Method == "UNSUBSCRIBE" {
		if err := json.Unmarshal(req.Params, &params); err != nil || len(params) == 0 {
			c.queueControl(ws.OpText, errorReply(2, "Invalid request: params must be a non-empty array of stream names", id), 0)
			return
		}
	}
	var reply []byte
	c.mu.Lock()
	switch req.Method {
	case "SUBSCRIBE":
		if !c.subscribeLocked(params) {
			reply = errorReply(2, "Invalid request: more than "+strconv.Itoa(c.s.cfg.MaxStreams)+" streams on one connection", id)
		}
	case "UNSUBSCRIBE":
		c.unsubscribeLocked(params)
	case "LIST_SUBSCRIPTIONS":
		names, _ := json.Marshal(append([]string{}, c.names...))
		reply = append(append(append(append([]byte(`{"result":`), names...), `,"id":`...), id...), '}')
	default:
		reply = errorReply(2, "Invalid request: unknown method "+strconv.Quote(req.Method), id)
	}
	if reply == nil {
		reply = append(append([]byte(`{"result":null,"id":`), id...), '}')
	}
	if !c.dead {
		c.queueLocked(ws.OpText, reply)
	}
	c.mu.Unlock()
	signal(c.wake)
	if req.Method == "SUBSCRIBE" {
		signal(c.s.subConn)
	}
}

// subscribeLocked adds streams; false when MaxStreams would be exceeded.
func (c *conn) subscribeLocked(names []string) bool {
	fresh := 0
	for i, n := range names {
		if !c.hasName(n) && !contains(names[:i], n) {
			fresh++
		}
	}
	if len(c.names)+fresh > c.s.cfg.MaxStreams {
		return false
	}
	for _, n := range names {
		if c.hasName(n) {
			continue
		}
		id := c.s.streams.id(n)
		for int(id>>6) >= len(c.subs) {
			c.subs = append(c.subs, 0)
		}
		c.subs[id>>6] |= 1 << (id & 63)
		c.names = append(c.names, n)
		c.s.stats.subscriptions.Add(1)
	}
	return true
}

func (c *conn) unsubscribeLocked(names []string) {
	for _, n := range names {
		for i, have := range c.names {
			if have == n {
				c.names = append(c.names[:i], c.names[i+1:]...)
				id := c.s.streams.id(n)
				c.subs[id>>6] &^= 1 << (id & 63)
				break
			}
		}
	}
}

func (c *conn) hasName(n string) bool { return contains(c.names, n) }

func contains(list []string, n string) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}
