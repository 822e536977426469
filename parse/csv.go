package parse

// DecodeCSV decodes one data.binance.vision aggTrades row
// agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker[,is_best_match]
// into dst for the given symbol index. Booleans are true/false or True/False;
// transact_time in milliseconds, or in microseconds when it has 16 or more
// digits (floored to milliseconds); EventTime = TradeTime. A trailing "\r" or
// "\n" is allowed. A header row returns ErrCSVHeader. Numbers follow the
// package rules; a wrong field count or bad boolean is ErrMalformed. dst is
// written only on success and does not alias row. No allocation.
func DecodeCSV(dst *Trade, row []byte, symbol uint32) error {
	for len(row) > 0 && (row[len(row)-1] == '\n' || row[len(row)-1] == '\r') {
		row = row[:len(row)-1]
	}
	if hasPrefixAt(row, 0, "agg_trade_id") {
		return ErrCSVHeader
	}
	var cols [8][]byte
	n := 0
	start := 0
	for i := 0; i <= len(row); i++ {
		if i < len(row) && row[i] != ',' {
			continue
		}
		if n == len(cols) {
			return ErrMalformed
		}
		cols[n] = row[start:i]
		n++
		start = i + 1
	}
	if n < 7 {
		return ErrMalformed
	}
	var o object
	o.setInt(fieldA, cols[0])
	o.setInt(fieldF, cols[3])
	o.setInt(fieldL, cols[4])
	transact := cols[5]
	o.setInt(fieldT, transact)
	if o.intErr[fieldT] == nil && len(transact) >= 16 {
		o.ints[fieldT] /= 1000
	}
	o.setString(fieldP, cols[1])
	o.setString(fieldQ, cols[2])
	var ok bool
	if o.m, ok = csvBool(cols[6]); !ok {
		return ErrMalformed
	}
	if n == 8 {
		if _, ok = csvBool(cols[7]); !ok {
			return ErrMalformed
		}
	}
	o.seen |= 1 << fieldM
	o.typed |= 1 << fieldM
	return build(dst, &o, nil, symbol, false, false)
}

func csvBool(b []byte) (v, ok bool) {
	switch string(b) {
	case "true", "True":
		return true, true
	case "false", "False":
		return false, true
	}
	return false, false
}
