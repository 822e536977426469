package api

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// apiError is a Binance error answer: {"code":Code,"msg":Msg} with an HTTP status.
type apiError struct {
	Status int
	Code   int
	Msg    string
}

func (e *apiError) Error() string { return strconv.Itoa(e.Code) + " " + e.Msg }

// Binance's error codes, as its REST API sends them.
const (
	codeUnknown       = -1000
	codeStartAfterEnd = -1023 // futures
	codeIllegalChars  = -1100
	codeTooManyParams = -1101
	codeMandatory     = -1102
	codeUnread        = -1104
	codeEmpty         = -1105
	codeBadInterval   = -1120
	codeBadSymbol     = -1121
	codeInvalidParam  = -1130
)

func badRequest(code int, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Msg: msg}
}

func errMandatory(name string) *apiError {
	return badRequest(codeMandatory, "Mandatory parameter '"+name+"' was not sent, was empty/null, or malformed.")
}

func errIllegal(name, legal string) *apiError {
	return badRequest(codeIllegalChars, "Illegal characters found in parameter '"+name+"'; legal range is '"+legal+"'.")
}

func errInvalid(name string) *apiError {
	return badRequest(codeInvalidParam, "Data sent for parameter '"+name+"' is not valid.")
}

var (
	errInvalidSymbol   = badRequest(codeBadSymbol, "Invalid symbol.")
	errInvalidInterval = badRequest(codeBadInterval, "Invalid interval.")
	errDuplicate       = badRequest(codeTooManyParams, "Duplicate values for a parameter detected.")
	errTooMany         = badRequest(codeTooManyParams, "Too many parameters sent for this endpoint.")
	errStartAfterEnd   = badRequest(codeStartAfterEnd, "Start time is greater than end time.")
)

const (
	// symbolPattern is Binance's legal range for a symbol parameter.
	symbolPattern = "^[A-Z0-9-_.]{1,20}$"
	longPattern   = "^[0-9]{1,20}$"
	// maxQuery bounds a query string; maxParams the parameters in it.
	maxQuery  = 2048
	maxParams = 12
)

// klinesQuery is a validated klines request. start and end are Unset when absent.
type klinesQuery struct {
	Symbol, Interval string
	Start, End       int64
	Limit            int
}

// queryParam is one name=value pair of a raw query, unescaped.
type queryParam struct{ name, value string }

// splitQuery unescapes a raw query into at most maxParams pairs and rejects
// duplicate names (Binance's -1101). Pairs without '=' have an empty value.
func splitQuery(raw string, dst []queryParam) ([]queryParam, *apiError) {
	if len(raw) > maxQuery {
		return dst, errTooMany
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		if len(dst) == maxParams {
			return dst, errTooMany
		}
		name, value, _ := strings.Cut(pair, "=")
		var err error
		if name, err = url.QueryUnescape(name); err != nil {
			return dst, badRequest(codeIllegalChars, "Illegal characters found in a parameter.")
		}
		if value, err = url.QueryUnescape(value); err != nil {
			return dst, errIllegal(name, "^[\\x20-\\x7e]*$")
		}
		for _, p := range dst {
			if p.name == name {
				return dst, errDuplicate
			}
		}
		dst = append(dst, queryParam{name, value})
	}
	return dst, nil
}

func validSymbol(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// parseLong parses a LONG parameter as Binance does: 1..20 digits, then int64.
func parseLong(name, v string) (int64, *apiError) {
	if len(v) == 0 || len(v) > 20 {
		return 0, errIllegal(name, longPattern)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, errIllegal(name, longPattern)
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errInvalid(name)
	}
	return n, nil
}

// utcTimeZone reports whether a spot timeZone parameter names UTC ("0",
// "+0", "00:00", "-0:00", ...): klagg's klines are on the UTC grid only.
func utcTimeZone(v string) bool {
	v = strings.TrimLeft(v, "+-")
	h, m, hasMin := strings.Cut(v, ":")
	zero := func(s string) bool {
		if s == "" || len(s) > 2 {
			return false
		}
		for i := 0; i < len(s); i++ {
			if s[i] != '0' {
				return false
			}
		}
		return true
	}
	return zero(h) && (!hasMin || zero(m))
}

// parseKlinesQuery validates a klines query (the raw query string) the way
// Binance does, with its error codes and messages. interval must name one of
// the served intervals (served reports it); spot accepts a UTC timeZone.
// Limit defaults to defLimit; above maxLimit futures answers -1130 and spot
// caps it, as Binance does.
func parseKlinesQuery(raw string, spot bool, defLimit, maxLimit int, served func(string) bool) (klinesQuery, *apiError) {
	q := klinesQuery{Start: Unset, End: Unset, Limit: defLimit}
	var buf [maxParams]queryParam
	params, e := splitQuery(raw, buf[:0])
	if e != nil {
		return q, e
	}
	get := func(name string) (string, bool) {
		for _, p := range params {
			if p.name == name {
				return p.value, true
			}
		}
		return "", false
	}
	read := 0
	sym, ok := get("symbol")
	if !ok || sym == "" {
		return q, errMandatory("symbol")
	}
	read++
	if !validSymbol(sym) {
		return q, errIllegal("symbol", symbolPattern)
	}
	iv, ok := get("interval")
	if !ok || iv == "" {
		return q, errMandatory("interval")
	}
	read++
	for _, name := range [...]string{"startTime", "endTime"} {
		v, ok := get(name)
		if !ok {
			continue
		}
		read++
		if v == "" {
			return q, badRequest(codeEmpty, "Parameter '"+name+"' was empty.")
		}
		n, e := parseLong(name, v)
		if e != nil {
			return q, e
		}
		if name == "startTime" {
			q.Start = n
		} else {
			q.End = n
		}
	}
	if v, ok := get("limit"); ok {
		read++
		if v == "" {
			return q, badRequest(codeEmpty, "Parameter 'limit' was empty.")
		}
		n, e := parseLong("limit", v)
		if e != nil {
			return q, e
		}
		switch {
		case n < 1:
			return q, errInvalid("limit")
		case n > int64(maxLimit) && !spot:
			return q, errInvalid("limit")
		case n > int64(maxLimit):
			n = int64(maxLimit)
		}
		q.Limit = int(n)
	}
	if v, ok := get("timeZone"); ok && spot {
		read++
		if !utcTimeZone(v) {
			return q, badRequest(codeInvalidParam, "Data sent for parameter 'timeZone' is not valid: klagg serves UTC klines only.")
		}
	}
	if !served(iv) {
		return q, errInvalidInterval
	}
	if read != len(params) {
		return q, badRequest(codeUnread, "Not all sent parameters were read; read '"+strconv.Itoa(read)+"' parameter(s) but was sent '"+strconv.Itoa(len(params))+"'.")
	}
	if q.Start != Unset && q.End != Unset && q.Start > q.End && !spot {
		return q, errStartAfterEnd
	}
	q.Symbol, q.Interval = sym, iv
	return q, nil
}
