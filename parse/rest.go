package parse

import (
	"encoding/json"
	"fmt"

	"github.com/minio/simdjson-go"
)

// DecodeRESTAggTrades appends to dst the trades of a REST /aggTrades response
// body ([{"a":..,"p":..,"q":..,"f":..,"l":..,"T":..,"m":..,"M":..},...]) for
// the given symbol index; EventTime = TradeTime. It uses encoding/json (not a
// hot path) and wraps the first failing element's sentinel with its index.
func DecodeRESTAggTrades(dst []Trade, body []byte, symbol uint32) ([]Trade, error) {
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return dst, fmt.Errorf("cannot decode aggTrades response: %w", ErrMalformed)
	}
	for i, m := range items {
		o := objectFromMap(m)
		var t Trade
		if err := build(&t, &o, nil, symbol, false, false); err != nil {
			return dst, fmt.Errorf("cannot decode aggTrade %d of response: %w", i, err)
		}
		dst = append(dst, t)
	}
	return dst, nil
}

// SymbolInfo is one entry of an exchangeInfo "symbols" array.
type SymbolInfo struct {
	Symbol       string `json:"symbol"`
	Status       string `json:"status"`
	BaseAsset    string `json:"baseAsset"`
	QuoteAsset   string `json:"quoteAsset"`
	ContractType string `json:"contractType"` // futures only
}

// ExchangeInfoSymbols lists the symbols of a spot or futures exchangeInfo
// response, with simdjson-go when the CPU supports it, else encoding/json.
func ExchangeInfoSymbols(body []byte) ([]SymbolInfo, error) {
	if simdSupported {
		return exchangeInfoSIMD(body)
	}
	return exchangeInfoStd(body)
}

func exchangeInfoStd(body []byte) ([]SymbolInfo, error) {
	var doc struct {
		Symbols []SymbolInfo `json:"symbols"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("cannot decode exchangeInfo: %w", ErrMalformed)
	}
	if doc.Symbols == nil {
		return nil, fmt.Errorf("cannot decode exchangeInfo symbols: %w", ErrMissingField)
	}
	return doc.Symbols, nil
}

func exchangeInfoSIMD(body []byte) ([]SymbolInfo, error) {
	pj, err := simdjson.Parse(body, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot decode exchangeInfo: %w", ErrMalformed)
	}
	iter := pj.Iter()
	iter.Advance()
	var root simdjson.Iter
	typ, r, err := iter.Root(&root)
	if err != nil || typ != simdjson.TypeObject {
		return nil, fmt.Errorf("cannot decode exchangeInfo: %w", ErrMalformed)
	}
	obj, err := r.Object(nil)
	if err != nil {
		return nil, fmt.Errorf("cannot decode exchangeInfo: %w", ErrMalformed)
	}
	el := obj.FindKey("symbols", nil)
	if el == nil || el.Type != simdjson.TypeArray {
		return nil, fmt.Errorf("cannot decode exchangeInfo symbols: %w", ErrMissingField)
	}
	arr, err := el.Iter.Array(nil)
	if err != nil {
		return nil, fmt.Errorf("cannot decode exchangeInfo symbols: %w", ErrMalformed)
	}
	var out []SymbolInfo
	var o simdjson.Object
	var e simdjson.Element
	it := arr.Iter()
	for it.Advance() == simdjson.TypeObject {
		if _, err := it.Object(&o); err != nil {
			return nil, fmt.Errorf("cannot decode exchangeInfo symbol: %w", ErrMalformed)
		}
		str := func(key string) string {
			if f := o.FindKey(key, &e); f != nil && f.Type == simdjson.TypeString {
				s, _ := f.Iter.String()
				return s
			}
			return ""
		}
		out = append(out, SymbolInfo{
			Symbol: str("symbol"), Status: str("status"), BaseAsset: str("baseAsset"),
			QuoteAsset: str("quoteAsset"), ContractType: str("contractType"),
		})
	}
	return out, nil
}
