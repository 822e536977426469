package parse

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestDecodeCSV(t *testing.T) {
	for _, c := range []struct {
		row  string
		want Trade
		err  error
	}{
		{"13519807,0.00141342,23.00000000,15373518,15373518,1570752011620,True,True", Trade{AggID: 13519807, Price: 141342, Qty: 23 * scaleFactor, FirstID: 15373518, LastID: 15373518, TradeTime: 1570752011620, EventTime: 1570752011620, Symbol: 7, BuyerMaker: true}, nil},
		{"5,1.5,2,10,12,1735689600123456,false\r\n", Trade{AggID: 5, Price: 150_000_000, Qty: 2 * scaleFactor, FirstID: 10, LastID: 12, TradeTime: 1735689600123, EventTime: 1735689600123, Symbol: 7}, nil},
		{"agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker", Trade{}, ErrCSVHeader},
		{"5,1.5,2,10,12,1735689600123,maybe", Trade{}, ErrMalformed},
		{"5,1.5,2,10,12,1735689600123", Trade{}, ErrMalformed},
		{"5,1.5,2,10,12,1735689600123,true,true,x", Trade{}, ErrMalformed},
		{"5,1.5,0,10,12,1735689600123,true", Trade{}, ErrZeroQuantity},
		{"5,1e5,1,10,12,1735689600123,true", Trade{}, ErrBadNumber},
		{"5,1.5,1,13,12,1735689600123,true", Trade{}, ErrBadTradeRange},
		{"-5,1.5,1,10,12,1735689600123,true", Trade{}, ErrNegative},
		{"5,1.5,1,0,9223372036854775807,1735689600123,true", Trade{}, ErrBadTradeRange},
		{"5,1.5,1,3,1099511627779,1735689600123,true", Trade{}, ErrBadTradeRange},
		{"5,1.5,1,10,12,0,true", Trade{}, ErrBadTimestamp},
		{"", Trade{}, ErrMalformed},
	} {
		var got Trade
		err := DecodeCSV(&got, []byte(c.row), 7)
		if err != c.err || got != c.want {
			t.Errorf("DecodeCSV(%q) = %+v, %v; want %+v, %v", c.row, got, err, c.want, c.err)
		}
	}
}

func TestDecodeCSVRealFile(t *testing.T) {
	data, err := os.ReadFile(sharedFile(t, "XRPETH-aggTrades-2019-10-11.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(data)), "\n")
	prev := int64(13519806)
	var count int64
	for _, row := range rows {
		var tr Trade
		if err := DecodeCSV(&tr, []byte(row), 0); err != nil {
			t.Fatalf("%q: %v", row, err)
		}
		if tr.AggID != prev+1 {
			t.Fatalf("ids not contiguous at %q", row)
		}
		prev = tr.AggID
		count += tr.Count()
	}
	if len(rows) != 12477 || prev != 13532283 {
		t.Fatalf("%d rows, last id %d", len(rows), prev)
	}
}

func TestDecodeRESTAggTrades(t *testing.T) {
	body, err := os.ReadFile(sharedFile(t, "spot-rest-aggTrades-sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	trades, err := DecodeRESTAggTrades(nil, body, 3)
	if err != nil || len(trades) != 10 {
		t.Fatalf("%d trades, %v", len(trades), err)
	}
	want := Trade{AggID: 966492862, Price: 6075960000000, Qty: 841000, FirstID: 1111480471, LastID: 1111480471, TradeTime: 1634944096633, EventTime: 1634944096633, Symbol: 3}
	if trades[0] != want {
		t.Fatalf("%+v, want %+v", trades[0], want)
	}
	_, err = DecodeRESTAggTrades(nil, []byte(`[{"a":1,"p":"1","q":"0","f":1,"l":1,"T":1,"m":true}]`), 0)
	if !errors.Is(err, ErrZeroQuantity) {
		t.Fatalf("got %v, want ErrZeroQuantity", err)
	}
	_, err = DecodeRESTAggTrades(nil, []byte(`[{"a":1,"p":"1","q":"1","f":0,"l":9223372036854775807,"T":1,"m":true}]`), 0)
	if !errors.Is(err, ErrBadTradeRange) {
		t.Fatalf("got %v, want ErrBadTradeRange", err)
	}
	if _, err = DecodeRESTAggTrades(nil, []byte(`{`), 0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
}

func TestExchangeInfoSymbols(t *testing.T) {
	for _, c := range []struct {
		file     string
		n        int
		contract bool
	}{{"futures-exchangeInfo-2021-07-22.json", 122, true}, {"spot-exchangeInfo-2021-10-12.json", 1695, false}} {
		body, err := os.ReadFile(sharedFile(t, c.file))
		if err != nil {
			t.Fatal(err)
		}
		std, err := exchangeInfoStd(body)
		if err != nil || len(std) != c.n {
			t.Fatalf("%s std: %d symbols, %v", c.file, len(std), err)
		}
		if std[0].Symbol == "" || std[0].QuoteAsset == "" || (std[0].ContractType != "") != c.contract {
			t.Fatalf("%s: %+v", c.file, std[0])
		}
		got, err := ExchangeInfoSymbols(body)
		if err != nil || len(got) != c.n {
			t.Fatalf("%s: %d symbols, %v", c.file, len(got), err)
		}
		for i := range got {
			if got[i] != std[i] {
				t.Fatalf("%s[%d]: %+v, std %+v", c.file, i, got[i], std[i])
			}
		}
		if SIMDSupported() {
			if _, err := exchangeInfoSIMD(body[:len(body)/2]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("truncated: %v", err)
			}
		}
	}
}
