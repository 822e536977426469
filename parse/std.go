package parse

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// DecodeStd is the encoding/json twin of the other engines: same semantics,
// same results, but it allocates and is an order of magnitude slower. It
// exists for differential tests and benchmarks. dst is written only on
// (KindAggTrade, nil). Safe for concurrent use.
func DecodeStd(dst *Trade, frame []byte, syms *Symbols) (Kind, error) {
	if !utf8.Valid(frame) {
		return KindOther, ErrInvalidUTF8
	}
	if !json.Valid(frame) {
		return KindOther, ErrMalformed
	}
	trimmed := bytes.TrimLeft(frame, " \t\r\n")
	if trimmed[0] != '{' {
		return KindOther, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(frame, &m); err != nil {
		return KindOther, ErrMalformed
	}
	top := objectFromMap(m)
	ev := &top
	var stream []byte
	if top.envelope() {
		stream = top.stream
		ev = nil
		if data := m["data"]; data[0] == '{' {
			var dm map[string]json.RawMessage
			if err := json.Unmarshal(data, &dm); err != nil {
				panic("BUG: parse: valid data object failed to unmarshal")
			}
			d := objectFromMap(dm)
			ev = &d
		}
	}
	kind := classify(ev, stream)
	if kind != KindAggTrade {
		return kind, nil
	}
	return kind, build(dst, ev, syms, 0, true, true)
}

func objectFromMap(m map[string]json.RawMessage) object {
	var o object
	for k, v := range m {
		o.assign([]byte(k), v, unquoteStd)
	}
	return o
}

// unquoteStd is encoding/json's reading of a JSON string token.
func unquoteStd(v []byte) []byte {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		panic("BUG: parse: valid JSON string failed to unmarshal")
	}
	return []byte(s)
}
