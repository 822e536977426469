package parse

// Kind names the event a frame carries.
type Kind uint8

// Kinds of frames. KindOther is the zero value.
const (
	KindOther      Kind = iota // any other event, or a frame that could not be classified
	KindAggTrade               // "aggTrade"
	KindDepth                  // "depthUpdate"
	KindBookTicker             // "bookTicker", or a spot bookTicker recognised by its stream name
	KindKline                  // "kline", "continuous_kline"
	KindMarkPrice              // "markPriceUpdate"
	KindTicker                 // "24hrTicker", "24hrMiniTicker"
	KindTrade                  // "trade"
	KindForceOrder             // "forceOrder"
	KindResult                 // subscription reply {"result":..,"id":..} or error reply {"error":..,"id":..}
	NumKinds       = iota
)

var kindNames = [NumKinds]string{"other", "aggTrade", "depth", "bookTicker", "kline", "markPrice", "ticker", "trade", "forceOrder", "result"}

func (k Kind) String() string {
	if int(k) < NumKinds {
		return kindNames[k]
	}
	return "invalid"
}

// kindOfEvent maps an "e" value to its Kind.
func kindOfEvent(e []byte) Kind {
	switch string(e) {
	case "aggTrade":
		return KindAggTrade
	case "depthUpdate":
		return KindDepth
	case "bookTicker":
		return KindBookTicker
	case "kline", "continuous_kline":
		return KindKline
	case "markPriceUpdate":
		return KindMarkPrice
	case "24hrTicker", "24hrMiniTicker":
		return KindTicker
	case "trade":
		return KindTrade
	case "forceOrder":
		return KindForceOrder
	}
	return KindOther
}
