package exchange

import (
	"errors"
	"fmt"
)

// Sentinel errors; functions wrap them with %w.
var (
	// ErrUnknownMarket: ParseMarket was given neither "futures" nor "spot".
	ErrUnknownMarket = errors.New("exchange: unknown market")
	// ErrClosed: the peer closed the WebSocket (close frame received and
	// answered) or Close was called. The wrapping error carries code and reason.
	ErrClosed = errors.New("exchange: websocket closed")
	// ErrFrameTooLarge: a message exceeded ConnConfig.MaxFrame. The connection
	// is unusable afterwards.
	ErrFrameTooLarge = errors.New("exchange: websocket message too large")
	// ErrProtocol: the server broke RFC 6455 (masked frame, reserved bits or
	// opcode, bad fragmentation, oversized control frame). The connection is
	// unusable afterwards.
	ErrProtocol = errors.New("exchange: websocket protocol violation")
	// ErrRejected: Binance answered a REST request with a 4xx other than
	// 429/418; the request is not retried. See APIError for code and message.
	ErrRejected = errors.New("exchange: request rejected")
	// ErrRetriesExhausted: a REST request kept failing transiently (5xx,
	// network error, 429, 418) for more than ClientConfig.MaxRetries retries.
	ErrRetriesExhausted = errors.New("exchange: retries exhausted")
	// ErrBadResponse: a 2xx REST response could not be decoded.
	ErrBadResponse = errors.New("exchange: bad response")
	// ErrBadRequest: a REST call was given arguments Binance would refuse
	// (limit out of range, empty symbol); nothing was sent.
	ErrBadRequest = errors.New("exchange: bad request arguments")
)

// APIError is a rejected REST request: the HTTP status and Binance's
// {"code":..,"msg":..} body. It unwraps to ErrRejected.
type APIError struct {
	Status int    // HTTP status code
	Code   int    // Binance error code, 0 if the body had none
	Msg    string // Binance error message, or the start of the raw body
}

func (e *APIError) Error() string {
	return fmt.Sprintf("binance rejected the request: HTTP %d, code %d: %s", e.Status, e.Code, e.Msg)
}

// Unwrap makes errors.Is(err, ErrRejected) true.
func (e *APIError) Unwrap() error { return ErrRejected }
