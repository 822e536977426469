package exchange

import (
	"slices"

	"github.com/klagg/klagg/parse"
)

// Tradable returns, in exchangeInfo order, the symbols klagg follows on m:
// futures perpetual contracts that are trading (delivery contracts are left
// out), or spot pairs that are trading. A non-empty quoteAssets keeps only
// symbols quoted in one of them ("USDT", ...; exact, upper case as Binance
// prints them).
func Tradable(m Market, infos []parse.SymbolInfo, quoteAssets []string) []string {
	var out []string
	for i := range infos {
		s := &infos[i]
		if s.Status != "TRADING" {
			continue
		}
		if m == Futures && s.ContractType != "PERPETUAL" {
			continue
		}
		if len(quoteAssets) > 0 && !slices.Contains(quoteAssets, s.QuoteAsset) {
			continue
		}
		out = append(out, s.Symbol)
	}
	return out
}
