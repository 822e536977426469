package parse

import "errors"

// Reason classifies a decode error; Counters count errors by Reason.
type Reason uint8

// Reasons, one per sentinel error.
const (
	ReasonNone          Reason = iota // no error
	ReasonMalformed                   // ErrMalformed
	ReasonMissingField                // ErrMissingField
	ReasonBadNumber                   // ErrBadNumber
	ReasonNegative                    // ErrNegative
	ReasonZeroPrice                   // ErrZeroPrice
	ReasonZeroQuantity                // ErrZeroQuantity
	ReasonTooManyDigits               // ErrTooManyDigits
	ReasonOutOfRange                  // ErrOutOfRange
	ReasonBadTradeRange               // ErrBadTradeRange
	ReasonBadTimestamp                // ErrBadTimestamp
	ReasonUnknownSymbol               // ErrUnknownSymbol
	ReasonInvalidUTF8                 // ErrInvalidUTF8
	ReasonTooLarge                    // ErrTooLarge
	ReasonCSVHeader                   // ErrCSVHeader
	ReasonNotCanonical                // ErrNotCanonical (not a failure)
	ReasonUnknown                     // an error that is not one of this package's sentinels
	NumReasons          = iota
)

// reasonError is the type of every sentinel: comparing pointers is free and
// the reason travels with the error without allocation.
type reasonError struct {
	reason Reason
	msg    string
}

func (e *reasonError) Error() string { return e.msg }

func newError(r Reason, msg string) error { return &reasonError{reason: r, msg: msg} }

// Sentinel errors. Hot-path functions return them unwrapped.
var (
	ErrMalformed     = newError(ReasonMalformed, "parse: malformed JSON or row")
	ErrMissingField  = newError(ReasonMissingField, "parse: missing field")
	ErrBadNumber     = newError(ReasonBadNumber, "parse: bad number syntax")
	ErrNegative      = newError(ReasonNegative, "parse: negative number")
	ErrZeroPrice     = newError(ReasonZeroPrice, "parse: zero price")
	ErrZeroQuantity  = newError(ReasonZeroQuantity, "parse: zero quantity")
	ErrTooManyDigits = newError(ReasonTooManyDigits, "parse: too many digits")
	ErrOutOfRange    = newError(ReasonOutOfRange, "parse: number out of range")
	ErrBadTradeRange = newError(ReasonBadTradeRange, "parse: bad trade id range (first after last, or 2^40 trades or more)")
	ErrBadTimestamp  = newError(ReasonBadTimestamp, "parse: timestamp out of range")
	ErrUnknownSymbol = newError(ReasonUnknownSymbol, "parse: unknown symbol")
	ErrInvalidUTF8   = newError(ReasonInvalidUTF8, "parse: invalid UTF-8")
	ErrTooLarge      = newError(ReasonTooLarge, "parse: frame too large")
	ErrCSVHeader     = newError(ReasonCSVHeader, "parse: CSV header row")
	ErrNotCanonical  = newError(ReasonNotCanonical, "parse: frame not in canonical layout")
)

var reasonNames = [NumReasons]string{
	"none", "malformed", "missingField", "badNumber", "negative", "zeroPrice", "zeroQuantity",
	"tooManyDigits", "outOfRange", "badTradeRange", "badTimestamp", "unknownSymbol", "invalidUTF8",
	"tooLarge", "csvHeader", "notCanonical", "unknown",
}

func (r Reason) String() string {
	if int(r) < NumReasons {
		return reasonNames[r]
	}
	return "invalid"
}

// ReasonOf returns the Reason of err, looking through wrapping: ReasonNone for
// nil, ReasonUnknown for errors that are not this package's.
func ReasonOf(err error) Reason {
	if err == nil {
		return ReasonNone
	}
	if e, ok := err.(*reasonError); ok {
		return e.reason
	}
	var e *reasonError
	if errors.As(err, &e) {
		return e.reason
	}
	return ReasonUnknown
}
