package api

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"go.uber.org/zap"
)

const opText = ws.OpText

// appendFrameHeader appends an unmasked, final server frame header.
func appendFrameHeader(dst []byte, op ws.OpCode, n int) []byte {
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

func controlFrame(op ws.OpCode, payload []byte) []byte {
	f := appendFrameHeader(make([]byte, 0, len(payload)+4), op, len(payload))
	return append(f, payload...)
}

func closeFrame(code ws.StatusCode, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return controlFrame(ws.OpClose, append(p, truncate(reason, 120)...))
}

// sub is one stream subscription of one connection. idx and gen locate the
// subscription's queued open-kline update in c.q, for coalescing; they are
// guarded by c.mu.
type sub struct {
	c   *conn
	st  *stream
	idx int
	gen uint64
}

// outItem is one queued frame; periodEnd (Unix ms) is set on closing events,
// to measure the delay from the end of the period to the frame leaving.
type outItem struct {
	b         []byte
	periodEnd int64
}

// conn is one WebSocket client.
//
// Goroutines: the reader (control messages, pings, pongs) and the writer (the
// only one that writes to nc) are the connection's own; the hub and the
// reader queue frames with enqueue under mu. State machine: open -> (dead:
// close frame queued, nothing more is queued) -> closed (nc closed,
// subscriptions released); any goroutine may call kill or close.
type conn struct {
	s        *Server
	nc       net.Conn
	br       *bufio.Reader
	remote   string
	combined atomic.Bool

	mu        sync.Mutex
	q         []outItem
	gen       uint64
	subs      map[string]*sub // by canonical stream name
	names     []string        // subscription order, for LIST_SUBSCRIPTIONS
	dead      bool
	closeMsg  []byte // the close frame to write before closing, when dead
	awaitPong []byte
	reason    string

	wake      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	msgTimes []time.Time // ring of the last incoming message times
	msgNext  int
}

func newConn(s *Server, nc net.Conn, br *bufio.Reader, combined bool) *conn {
	c := &conn{
		s: s, nc: nc, br: br, remote: nc.RemoteAddr().String(),
		subs:     map[string]*sub{},
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		msgTimes: make([]time.Time, s.cfg.MessagesPerSec),
	}
	c.combined.Store(combined)
	return c
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// enqueue queues frame b for sb. An open-kline update replaces the
// subscription's update still queued (coalescing); a closing event or a
// reply (sb nil) is always appended. A queue over Config.SendQueue kills the
// connection: its client cannot keep up.
func (c *conn) enqueue(sb *sub, b []byte, closed bool, periodEnd int64) {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	if sb != nil && !closed && sb.gen == c.gen && sb.idx >= 0 {
		c.q[sb.idx].b = b
		c.mu.Unlock()
		c.s.m.wsCoalesced.Inc()
		return
	}
	if len(c.q) >= c.s.cfg.SendQueue {
		c.killLocked(ws.StatusPolicyViolation, "slow consumer: "+strconv.Itoa(len(c.q))+" frames queued")
		c.mu.Unlock()
		c.s.m.wsSlow.Inc()
		return
	}
	wasEmpty := len(c.q) == 0
	c.q = append(c.q, outItem{b: b, periodEnd: periodEnd})
	if sb != nil {
		if closed {
			sb.idx = -1 // a later update must not jump ahead of this close
		} else {
			sb.idx, sb.gen = len(c.q)-1, c.gen
		}
	}
	c.mu.Unlock()
	if wasEmpty {
		signal(c.wake)
	}
}

// killLocked drops the queue and has the writer send a close frame with
// reason, then close. c.mu is held.
func (c *conn) killLocked(code ws.StatusCode, reason string) {
	if c.dead {
		return
	}
	c.dead = true
	c.reason = reason
	c.closeMsg = closeFrame(code, reason)
	clear(c.q)
	c.q = c.q[:0]
	signal(c.wake)
}

func (c *conn) kill(code ws.StatusCode, reason string) {
	c.mu.Lock()
	c.killLocked(code, reason)
	c.mu.Unlock()
}

// close ends the connection once and releases its subscriptions.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.dead = true
		reason := c.reason
		subs := c.subs
		c.subs = map[string]*sub{}
		c.names = nil
		clear(c.q)
		c.mu.Unlock()
		close(c.done)
		_ = c.nc.Close()
		for _, sb := range subs {
			c.s.unsubscribe(sb)
		}
		c.s.removeConn(c)
		if reason != "" {
			if ce := c.s.log.Check(zap.InfoLevel, "websocket client disconnected"); ce != nil {
				ce.Write(zap.String("remote", c.remote), zap.String("reason", reason))
			}
		}
	})
}

// writeLoop is the writer goroutine: it writes everything queued since its
// last write with one writev, pings on schedule and enforces the pong timeout
// and the connection age limit.
func (c *conn) writeLoop() {
	defer c.close()
	cfg := &c.s.cfg
	ping := time.NewTicker(cfg.PingEvery)
	defer ping.Stop()
	age := time.NewTimer(cfg.MaxConnAge)
	defer age.Stop()
	var pongTimer *time.Timer
	var pongC <-chan time.Time
	defer func() {
		if pongTimer != nil {
			pongTimer.Stop()
		}
	}()
	var spare []outItem
	var bufs net.Buffers
	var pingSeq int64
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		case <-ping.C:
			pingSeq++
			payload := strconv.AppendInt(nil, pingSeq, 10)
			c.mu.Lock()
			armed := c.awaitPong != nil
			if !armed {
				c.awaitPong = payload
			}
			c.mu.Unlock()
			c.enqueue(nil, controlFrame(ws.OpPing, payload), true, 0)
			if !armed {
				pongTimer = time.NewTimer(cfg.PongTimeout)
				pongC = pongTimer.C
			}
		case <-pongC:
			pongC = nil
			c.mu.Lock()
			late := c.awaitPong != nil
			c.mu.Unlock()
			if late {
				c.s.m.wsPongTimeouts.Inc()
				c.kill(ws.StatusPolicyViolation, "pong timeout")
			}
		case <-age.C:
			c.kill(ws.StatusGoingAway, "connection age limit")
		}
		c.mu.Lock()
		items, closeMsg := c.q, c.closeMsg
		c.q, c.closeMsg = spare[:0], nil
		c.gen++
		dead := c.dead
		c.mu.Unlock()
		if pongC == nil && pongTimer != nil {
			c.mu.Lock()
			if c.awaitPong == nil {
				pongTimer.Stop()
				pongTimer = nil
			}
			c.mu.Unlock()
		}
		if len(items) > 0 {
			bufs = bufs[:0]
			n := 0
			for i := range items {
				bufs = append(bufs, items[i].b)
				n += len(items[i].b)
			}
			_ = c.nc.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout))
			w := bufs // WriteTo consumes its receiver
			_, err := w.WriteTo(c.nc)
			if err != nil {
				c.mu.Lock()
				if c.reason == "" {
					c.reason = "write: " + err.Error()
				}
				c.mu.Unlock()
				return
			}
			c.s.m.wsFrames.Add(len(items))
			c.s.m.wsBytes.Add(n)
			nowMs := time.Now().UnixMilli()
			for i := range items {
				if pe := items[i].periodEnd; pe > 0 {
					c.s.m.closeDelay.Update(float64(nowMs-pe) / 1000)
				}
			}
			clear(bufs)
		}
		clear(items)
		spare = items[:0]
		if dead {
			if closeMsg != nil {
				_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = c.nc.Write(closeMsg)
			}
			return
		}
	}
}

// tooFast records one incoming message and reports whether the connection
// sent more than Config.MessagesPerSec within a second.
func (c *conn) tooFast(now time.Time) bool {
	oldest := c.msgTimes[c.msgNext]
	c.msgTimes[c.msgNext] = now
	c.msgNext++
	if c.msgNext == len(c.msgTimes) {
		c.msgNext = 0
	}
	return !oldest.IsZero() && now.Sub(oldest) < time.Second
}

// readLoop is the reader goroutine. When it stops because the connection
// was killed, the writer sends the close frame and closes; otherwise (a read
// error) it closes at once.
func (c *conn) readLoop() {
	defer func() {
		c.mu.Lock()
		killed := c.dead // killed: the writer sends the close frame, then closes
		c.mu.Unlock()
		if !killed {
			c.close()
		}
	}()
	max := int64(c.s.cfg.MaxMessage)
	var payload, msg []byte
	var msgOp ws.OpCode
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			c.setReason("read: " + err.Error())
			return
		}
		if h.Length > max || (!h.OpCode.IsControl() && int64(len(msg))+h.Length > max) {
			c.s.m.wsTooLarge.Inc()
			c.kill(ws.StatusMessageTooBig, "message too large")
			return
		}
		if h.OpCode.IsControl() && (!h.Fin || h.Length > 125) {
			c.kill(ws.StatusProtocolError, "malformed control frame")
			return
		}
		payload = slices.Grow(payload[:0], int(h.Length))[:h.Length]
		if _, err := io.ReadFull(c.br, payload); err != nil {
			c.setReason("read: " + err.Error())
			return
		}
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpContinuation:
			if msg == nil {
				c.kill(ws.StatusProtocolError, "continuation without a message")
				return
			}
			msg = append(msg, payload...)
			if !h.Fin {
				continue
			}
			payload, msg = msg, nil
			h.OpCode = msgOp
		case ws.OpText, ws.OpBinary:
			if msg != nil {
				c.kill(ws.StatusProtocolError, "new message inside a fragmented one")
				return
			}
			if !h.Fin {
				msg, msgOp = append([]byte{}, payload...), h.OpCode
				continue
			}
		}
		if h.OpCode != ws.OpClose && c.tooFast(time.Now()) {
			c.s.m.wsTooFast.Inc()
			c.kill(ws.StatusPolicyViolation, "Too many requests")
			return
		}
		switch h.OpCode {
		case ws.OpText:
			c.s.m.wsRequests.Inc()
			c.handleControl(payload)
		case ws.OpBinary:
			c.s.m.wsRequests.Inc()
			c.enqueue(nil, controlFrame(ws.OpText, controlError(3, "Invalid JSON: binary message", nullID)), true, 0)
		case ws.OpPing:
			c.enqueue(nil, controlFrame(ws.OpPong, payload), true, 0)
		case ws.OpPong:
			c.mu.Lock()
			if c.awaitPong != nil && bytes.Equal(c.awaitPong, payload) {
				c.awaitPong = nil
			}
			c.mu.Unlock()
		case ws.OpClose:
			code := ws.StatusNormalClosure
			if len(payload) >= 2 {
				code = ws.StatusCode(binary.BigEndian.Uint16(payload))
			}
			c.kill(code, "")
			c.setReason("client closed")
			return
		default:
			c.kill(ws.StatusProtocolError, "unknown opcode")
			return
		}
	}
}

func (c *conn) setReason(r string) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = r
	}
	c.mu.Unlock()
}

// handleControl answers one control message.
func (c *conn) handleControl(msg []byte) {
	req, errReply := parseControl(msg, c.s.cfg.MaxStreams)
	if errReply != nil {
		c.s.m.wsBadRequests.Inc()
		c.enqueue(nil, controlFrame(ws.OpText, errReply), true, 0)
		return
	}
	var reply []byte
	switch req.Method {
	case methodSubscribe:
		if err := c.subscribe(req.Streams); err != "" {
			c.s.m.wsBadRequests.Inc()
			reply = controlError(2, "Invalid request: "+err, req.ID)
		}
	case methodUnsubscribe:
		c.unsubscribe(req.Streams)
	case methodList:
		c.mu.Lock()
		list := appendStringList(nil, c.names)
		c.mu.Unlock()
		reply = controlResult(list, req.ID)
	case methodSetProperty:
		c.combined.Store(req.Value)
	case methodGetProperty:
		reply = controlResult(strconv.AppendBool(nil, c.combined.Load()), req.ID)
	}
	if reply == nil {
		reply = controlResult(nullID, req.ID)
	}
	c.enqueue(nil, controlFrame(ws.OpText, reply), true, 0)
}

func appendStringList(dst []byte, names []string) []byte {
	dst = append(dst, '[')
	for i, n := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendQuote(dst, n)
	}
	return append(dst, ']')
}

// subscribe adds streams; it returns a reason when it subscribes none
// because a name is not a served kline stream or the connection would
// exceed Config.MaxStreams.
func (c *conn) subscribe(names []string) string {
	type want struct {
		name, symbol string
		iv           int
	}
	wants := make([]want, 0, len(names))
	for _, n := range names {
		sym, ivName, ok := parseStreamName(n)
		if !ok {
			return "klagg serves <symbol>@kline_<interval> streams only, not " + strconv.Quote(truncate(n, 64))
		}
		iv, ok := c.s.intervalIndex(ivName)
		if !ok {
			return "interval " + strconv.Quote(truncate(ivName, 16)) + " is not served (served: " + c.s.intervalList + ")"
		}
		wants = append(wants, want{streamName(sym, ivName), sym, iv})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return ""
	}
	fresh := 0
	for i, w := range wants {
		if c.subs[w.name] == nil && !slices.ContainsFunc(wants[:i], func(o want) bool { return o.name == w.name }) {
			fresh++
		}
	}
	if len(c.subs)+fresh > c.s.cfg.MaxStreams {
		return "more than " + strconv.Itoa(c.s.cfg.MaxStreams) + " streams on one connection"
	}
	for _, w := range wants {
		if c.subs[w.name] != nil {
			continue
		}
		st := c.s.registry(w.symbol, w.iv, false)
		sb := &sub{c: c, st: st, idx: -1}
		c.s.subscribe(sb)
		c.subs[w.name] = sb
		c.names = append(c.names, w.name)
	}
	return ""
}

func (c *conn) unsubscribe(names []string) {
	c.mu.Lock()
	var gone []*sub
	for _, n := range names {
		sym, iv, ok := parseStreamName(n)
		if !ok {
			continue
		}
		name := streamName(sym, iv)
		if sb := c.subs[name]; sb != nil {
			delete(c.subs, name)
			c.names = slices.DeleteFunc(c.names, func(x string) bool { return x == name })
			gone = append(gone, sb)
		}
	}
	c.mu.Unlock()
	for _, sb := range gone {
		c.s.unsubscribe(sb)
	}
}
