package exchange

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// SubscribeMessage appends to dst the control message
// {"method":METHOD,"params":[STREAMS...],"id":ID}; method is "SUBSCRIBE",
// "UNSUBSCRIBE" or "LIST_SUBSCRIPTIONS".
func SubscribeMessage(dst []byte, method string, id int64, streams []string) []byte {
	dst = append(dst, `{"method":`...)
	dst = appendJSONString(dst, method)
	dst = append(dst, `,"params":[`...)
	for i, s := range streams {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	dst = append(dst, `],"id":`...)
	dst = strconv.AppendInt(dst, id, 10)
	return append(dst, '}')
}

func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

var (
	idKey          = []byte(`"id"`)
	serverShutdown = []byte(`serverShutdown`)
)

// ParseReply recognises the reply to a control message: {"result":..,"id":N}
// (errCode 0) or {"error":{"code":C,"msg":M},"id":N}. ok is false for any other
// frame (stream events, garbage). Frames without an "id" key are rejected
// without allocating, so it is cheap to call on every non-aggTrade frame.
func ParseReply(frame []byte) (id int64, errCode int, errMsg string, ok bool) {
	if !bytes.Contains(frame, idKey) {
		return 0, 0, "", false
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		ID     *int64          `json:"id"`
		Error  *struct {
			Code int    `json:"code"`
			Msg  string `json:"msg"`
		} `json:"error"`
	}
	if err := json.Unmarshal(frame, &r); err != nil {
		return 0, 0, "", false
	}
	if r.ID != nil {
		id = *r.ID
	}
	switch {
	case r.Error != nil:
		return id, r.Error.Code, r.Error.Msg, true
	case r.Result != nil && r.ID != nil:
		return id, 0, "", true
	}
	return 0, 0, "", false
}

// IsServerShutdown reports whether frame is Binance's announcement of a
// disconnect: {"e":"serverShutdown",..}, raw or wrapped in a combined envelope
// ({"stream":"!serverShutdown","data":{..}}). Frames that do not contain the
// word are rejected without allocating.
func IsServerShutdown(frame []byte) bool {
	if !bytes.Contains(frame, serverShutdown) {
		return false
	}
	// EventTime takes "E" so that encoding/json's case-insensitive matching
	// does not feed the number into Event.
	type event struct {
		Event     string          `json:"e"`
		EventTime json.RawMessage `json:"E"`
	}
	var m struct {
		event
		Stream string `json:"stream"`
		Data   event  `json:"data"`
	}
	if err := json.Unmarshal(frame, &m); err != nil {
		return false
	}
	return m.Event == "serverShutdown" || m.Stream == "!serverShutdown" || m.Data.Event == "serverShutdown"
}
