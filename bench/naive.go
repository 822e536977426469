package bench

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"
)

// The naive baseline is written the way a typical Go program would turn an
// aggTrade stream into klines: encoding/json into a struct with string fields,
// strconv.ParseFloat, one buffered channel from the reader goroutine to one
// aggregator goroutine, a mutex-guarded map keyed by symbol+"@"+interval, float64
// sums. It exists so the optimised pipeline is always measured beside it.
//
// Simplifications, all of them usual in such programs: month intervals are not
// supported (intervals are fixed millisecond lengths; 1w is aligned to Monday
// like Binance's), periods without trades emit no kline, and a trade for a kline
// already closed is dropped.

// naiveFrame is the combined-stream envelope; Data alone is a bare frame.
type naiveFrame struct {
	Stream string        `json:"stream"`
	Data   naiveAggTrade `json:"data"`
}

type naiveAggTrade struct {
	EventType string `json:"e"`
	EventTime int64  `json:"E"`
	AggID     int64  `json:"a"`
	Symbol    string `json:"s"`
	Price     string `json:"p"`
	Qty       string `json:"q"`
	FirstID   int64  `json:"f"`
	LastID    int64  `json:"l"`
	TradeTime int64  `json:"T"`
	Maker     bool   `json:"m"`
}

// naiveTrade is what the reader goroutine sends to the aggregator.
type naiveTrade struct {
	symbol    string
	price     float64
	qty       float64
	tradeTime int64
	count     int64
	maker     bool
}

// naiveKline is one kline being built, in float64.
type naiveKline struct {
	Symbol              string
	Interval            int64 // ms
	OpenTime, CloseTime int64 // CloseTime = OpenTime + Interval - 1, as Binance prints it
	Open, High, Low     float64
	Close               float64
	Volume              float64
	QuoteVolume         float64
	TakerBuyVolume      float64
	TakerBuyQuoteVolume float64
	Trades              int64
}

// NaiveResult is what RunNaive did: aggTrades processed, klines closed, and the
// wall time from the first frame to the last kline closed.
type NaiveResult struct {
	Trades  int
	Klines  int
	Elapsed time.Duration
}

// RunNaive processes every frame end to end through the naive baseline, for
// each interval (millisecond lengths), and returns when the aggregator is done.
// Klines close when the watermark (the largest trade time seen) passes their
// end; klines still open after the last frame are not counted. Frames that are
// not aggTrades, or that fail to decode, are skipped.
func RunNaive(frames [][]byte, intervals []int64) NaiveResult {
	var closed int
	res := runNaive(frames, intervals, func(*naiveKline) { closed++ })
	res.Klines = closed
	return res
}

const week = 7 * 24 * 3600 * 1000

// naiveOpenTime is the start of the interval holding t. Epoch day 0 was a
// Thursday; Binance's weeks start on Monday, 4 days later.
func naiveOpenTime(t, interval int64) int64 {
	offset := int64(0)
	if interval == week {
		offset = 4 * 24 * 3600 * 1000
	}
	return t - ((t-offset)%interval+interval)%interval
}

// runNaive is RunNaive with the closed klines handed to emit on the aggregator
// goroutine.
func runNaive(frames [][]byte, intervals []int64, emit func(*naiveKline)) NaiveResult {
	began := time.Now()
	trades := make(chan naiveTrade, 1024)
	var (
		mu     sync.Mutex
		klines = map[string]*naiveKline{}
	)
	var processed int
	done := make(chan struct{})
	go func() { // aggregator
		defer close(done)
		var watermark int64
		for tr := range trades {
			processed++
			mu.Lock()
			for _, iv := range intervals {
				key := tr.symbol + "@" + strconv.FormatInt(iv, 10)
				open := naiveOpenTime(tr.tradeTime, iv)
				k := klines[key]
				if open+iv <= watermark || (k != nil && open < k.OpenTime) {
					continue // late trade for a kline already closed
				}
				if k != nil && open > k.OpenTime {
					emit(k)
					k = nil
				}
				if k == nil {
					k = &naiveKline{
						Symbol: tr.symbol, Interval: iv, OpenTime: open, CloseTime: open + iv - 1,
						Open: tr.price, High: tr.price, Low: tr.price,
					}
					klines[key] = k
				}
				if tr.price > k.High {
					k.High = tr.price
				}
				if tr.price < k.Low {
					k.Low = tr.price
				}
				k.Close = tr.price
				k.Volume += tr.qty
				k.QuoteVolume += tr.price * tr.qty
				if !tr.maker {
					k.TakerBuyVolume += tr.qty
					k.TakerBuyQuoteVolume += tr.price * tr.qty
				}
				k.Trades += tr.count
			}
			if tr.tradeTime > watermark {
				crossed := false
				for _, iv := range intervals {
					crossed = crossed || naiveOpenTime(tr.tradeTime, iv) != naiveOpenTime(watermark, iv)
				}
				watermark = tr.tradeTime
				if crossed { // sweep: close everything that ended before the watermark
					for key, k := range klines {
						if k.CloseTime < watermark {
							emit(k)
							delete(klines, key)
						}
					}
				}
			}
			mu.Unlock()
		}
	}()
	for _, frame := range frames { // reader
		var f naiveFrame
		if err := json.Unmarshal(frame, &f); err != nil {
			continue
		}
		if f.Stream == "" && f.Data.EventType == "" { // bare frame, no envelope
			if err := json.Unmarshal(frame, &f.Data); err != nil {
				continue
			}
		}
		d := &f.Data
		if d.EventType != "aggTrade" {
			continue
		}
		price, err := strconv.ParseFloat(d.Price, 64)
		if err != nil {
			continue
		}
		qty, err := strconv.ParseFloat(d.Qty, 64)
		if err != nil {
			continue
		}
		trades <- naiveTrade{
			symbol: d.Symbol, price: price, qty: qty, tradeTime: d.TradeTime,
			count: d.LastID - d.FirstID + 1, maker: d.Maker,
		}
	}
	close(trades)
	<-done
	return NaiveResult{Trades: processed, Elapsed: time.Since(began)}
}
