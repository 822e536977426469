package parse

// Decoder decodes frames with the engine its Config selects and counts what
// it sees. It holds reusable parser state, so it belongs to one goroutine:
// not safe for concurrent use.
type Decoder struct {
	maxFrame int
	engine   Engine
	useSIMD  bool // EngineAuto: frames above autoGeneralMax go to simdjson-go
	syms     *SymbolTable
	counters Counters
	simd     simdState
}

// NewDecoder returns a Decoder that resolves symbols through syms (read with
// one atomic load per frame, so symbols added later are seen). A nil syms is
// an empty table.
func NewDecoder(cfg Config, syms *SymbolTable) *Decoder {
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if syms == nil {
		syms = &SymbolTable{}
	}
	return &Decoder{
		maxFrame: cfg.MaxFrame,
		engine:   cfg.Engine,
		useSIMD:  simdSupported && cfg.Engine == EngineAuto,
		syms:     syms,
	}
}

// Decode decodes one frame. It fills dst only when it returns
// (KindAggTrade, nil) and leaves it untouched otherwise; for other kinds it
// returns (kind, nil). dst holds no reference to frame, which the caller may
// reuse at once. Every frame bumps Counters().Frames[kind], every failure
// Counters().Errors[reason]; errors are the package sentinels, unwrapped.
// Steady state allocates nothing with EngineAuto and EngineFast, on and off
// the canonical layout, except to unescape strings holding escapes.
func (d *Decoder) Decode(dst *Trade, frame []byte) (Kind, error) {
	if len(frame) > d.maxFrame {
		d.counters.Frames[KindOther]++
		d.counters.Errors[ReasonTooLarge]++
		return KindOther, ErrTooLarge
	}
	syms := d.syms.Load()
	var kind Kind
	var err error
	switch d.engine {
	case EngineSIMD:
		kind, err = d.decodeSIMD(dst, frame, syms)
	case EngineStd:
		kind, err = DecodeStd(dst, frame, syms)
	default:
		kind, err = DecodeFast(dst, frame, syms)
		if err == ErrNotCanonical {
			d.counters.Fallbacks++
			if d.useSIMD && len(frame) > autoGeneralMax {
				kind, err = d.decodeSIMD(dst, frame, syms)
			} else {
				kind, err = decodeGeneral(dst, frame, syms)
			}
		}
	}
	d.counters.Frames[kind]++
	if err != nil {
		d.counters.Errors[ReasonOf(err)]++
	}
	return kind, err
}

// Counters returns the Decoder's counters; read them on the Decoder's goroutine.
func (d *Decoder) Counters() *Counters { return &d.counters }

// Symbols returns the table the Decoder resolves symbols with.
func (d *Decoder) Symbols() *SymbolTable { return d.syms }
