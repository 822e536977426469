package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// WebSocket control methods.
const (
	methodSubscribe   = "SUBSCRIBE"
	methodUnsubscribe = "UNSUBSCRIBE"
	methodList        = "LIST_SUBSCRIPTIONS"
	methodSetProperty = "SET_PROPERTY"
	methodGetProperty = "GET_PROPERTY"
)

// controlRequest is one parsed control message.
type controlRequest struct {
	Method string
	// Streams are SUBSCRIBE's and UNSUBSCRIBE's stream names as sent.
	Streams []string
	// Property and Value are SET_PROPERTY's and GET_PROPERTY's ("combined").
	Property string
	Value    bool
	// ID is the request id as the reply echoes it: a JSON number, a JSON
	// string or null.
	ID []byte
}

var nullID = []byte("null")

// controlError builds Binance's error reply {"error":{"code":C,"msg":M},"id":ID}.
func controlError(code int, msg string, id []byte) []byte {
	b := []byte(`{"error":{"code":`)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"msg":`...)
	m, _ := json.Marshal(msg)
	b = append(b, m...)
	b = append(b, `},"id":`...)
	b = append(b, id...)
	return append(b, '}')
}

// controlResult builds the success reply {"result":RESULT,"id":ID}.
func controlResult(result, id []byte) []byte {
	b := append([]byte(`{"result":`), result...)
	b = append(b, `,"id":`...)
	b = append(b, id...)
	return append(b, '}')
}

// canonicalID validates a request id the way Binance accepts them: a 64-bit
// signed integer, an alphanumeric string of at most 36 characters (dashes and
// underscores allowed, so UUIDs pass) or null. It returns the id to echo.
func canonicalID(raw json.RawMessage) ([]byte, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, nullID) {
		return nullID, true
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || len(s) > 36 {
			return nil, false
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return nil, false
			}
		}
		return strconv.AppendQuote(nil, s), true
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return nil, false
	}
	return strconv.AppendInt(nil, n, 10), true
}

// parseControl parses a control message. On failure it returns the error reply
// to send instead. It never panics, whatever msg holds.
func parseControl(msg []byte, maxStreams int) (controlRequest, []byte) {
	var req controlRequest
	var m struct {
		Method *string          `json:"method"`
		Params json.RawMessage  `json:"params"`
		ID     *json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		return req, controlError(3, "Invalid JSON: "+err.Error(), nullID)
	}
	req.ID = nullID
	if m.ID != nil {
		id, ok := canonicalID(*m.ID)
		if !ok {
			return req, controlError(2, "Invalid request: request ID must be an unsigned integer", nullID)
		}
		req.ID = id
	}
	if m.Method == nil {
		return req, controlError(2, "Invalid request: missing field `method`", req.ID)
	}
	req.Method = *m.Method
	switch req.Method {
	case methodSubscribe, methodUnsubscribe:
		if err := json.Unmarshal(m.Params, &req.Streams); err != nil || len(req.Streams) == 0 {
			return req, controlError(2, "Invalid request: params must be a non-empty array of stream names", req.ID)
		}
		if len(req.Streams) > maxStreams {
			return req, controlError(2, "Invalid request: too many parameters", req.ID)
		}
	case methodList:
	case methodSetProperty, methodGetProperty:
		var params []json.RawMessage
		if err := json.Unmarshal(m.Params, &params); err != nil || len(params) == 0 {
			return req, controlError(2, "Invalid request: property name must be a string", req.ID)
		}
		if err := json.Unmarshal(params[0], &req.Property); err != nil {
			return req, controlError(2, "Invalid request: property name must be a string", req.ID)
		}
		if req.Property != "combined" {
			return req, controlError(0, "Unknown property", req.ID)
		}
		if req.Method == methodSetProperty {
			if len(params) != 2 || json.Unmarshal(params[1], &req.Value) != nil {
				return req, controlError(1, "Invalid value type: expected Boolean", req.ID)
			}
		}
	default:
		return req, controlError(2, "Invalid request: unknown variant `"+truncate(req.Method, 32)+"`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`", req.ID)
	}
	return req, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

const klineInfix = "@kline_"

// parseStreamName splits "<symbol>@kline_<interval>" into the upper-case
// symbol and the interval name; the symbol part may be in any case (Binance's
// names are lower case), up to 20 characters of [A-Za-z0-9-_.]. The interval
// is not checked against the served ones here.
func parseStreamName(name string) (symbol, interval string, ok bool) {
	sym, iv, found := strings.Cut(name, klineInfix)
	if !found || iv == "" || len(iv) > 8 {
		return "", "", false
	}
	if len(sym) == 0 || len(sym) > 20 {
		return "", "", false
	}
	var buf [20]byte
	for i := 0; i < len(sym); i++ {
		c := sym[i]
		switch {
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return "", "", false
		}
		buf[i] = c
	}
	return string(buf[:len(sym)]), iv, true
}

// streamName is the canonical name of a symbol's kline stream: lower-case
// symbol, "@kline_", interval.
func streamName(symbol, interval string) string {
	return strings.ToLower(symbol) + klineInfix + interval
}
