package api

import (
	"github.com/VictoriaMetrics/metrics"
)

// closeDelayBuckets are the upper bounds (seconds) of the period-end to
// close-frame histogram: the pipeline's grace (2 s by default) dominates it.
var closeDelayBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 10, 30}

// serverMetrics are the Server's counters, registered in Config.Metrics
// under klagg_api_*.
type serverMetrics struct {
	publishedClosed, publishedUpdates, publishInvalid *metrics.Counter
	publishedMarks                                    *metrics.Counter
	processed                                         *metrics.Counter
	updatesDropped, updatesCoalesced                  *metrics.Counter
	closedSpilled, closedLost                         *metrics.Counter
	eventsEncoded                                     *metrics.Counter

	wsAccepted, wsRejected, wsUpgradeFailed *metrics.Counter
	wsFrames, wsBytes, wsCoalesced          *metrics.Counter
	wsSlow, wsTooFast, wsPongTimeouts       *metrics.Counter
	wsTooLarge, wsRequests, wsBadRequests   *metrics.Counter
	restOK, restClientErr, restServerErr    *metrics.Counter
	restRequests                            *metrics.Counter
	closeDelay, restDuration                *metrics.PrometheusHistogram
}

func newServerMetrics(set *metrics.Set, s *Server) serverMetrics {
	c := set.GetOrCreateCounter
	m := serverMetrics{
		publishedClosed:  c(`klagg_api_published_total{kind="closed"}`),
		publishedUpdates: c(`klagg_api_published_total{kind="update"}`),
		publishInvalid:   c(`klagg_api_publish_invalid_total`),
		publishedMarks:   c(`klagg_api_published_total{kind="mark"}`),
		processed:        c(`klagg_api_publish_processed_total`),
		updatesDropped:   c(`klagg_api_publish_dropped_total{kind="update"}`),
		closedLost:       c(`klagg_api_publish_dropped_total{kind="closed"}`),
		closedSpilled:    c(`klagg_api_publish_spilled_total`),
		updatesCoalesced: c(`klagg_api_updates_coalesced_total{where="cadence"}`),
		eventsEncoded:    c(`klagg_api_events_encoded_total`),

		wsAccepted:      c(`klagg_api_ws_connections_total{result="accepted"}`),
		wsRejected:      c(`klagg_api_ws_connections_total{result="rejected"}`),
		wsUpgradeFailed: c(`klagg_api_ws_connections_total{result="upgrade_failed"}`),
		wsFrames:        c(`klagg_api_ws_frames_sent_total`),
		wsBytes:         c(`klagg_api_ws_bytes_sent_total`),
		wsCoalesced:     c(`klagg_api_updates_coalesced_total{where="connection"}`),
		wsSlow:          c(`klagg_api_ws_disconnects_total{reason="slow_consumer"}`),
		wsTooFast:       c(`klagg_api_ws_disconnects_total{reason="too_many_messages"}`),
		wsPongTimeouts:  c(`klagg_api_ws_disconnects_total{reason="pong_timeout"}`),
		wsTooLarge:      c(`klagg_api_ws_disconnects_total{reason="message_too_large"}`),
		wsRequests:      c(`klagg_api_ws_requests_total`),
		wsBadRequests:   c(`klagg_api_ws_bad_requests_total`),
		restOK:          c(`klagg_api_rest_requests_total{result="ok"}`),
		restClientErr:   c(`klagg_api_rest_requests_total{result="client_error"}`),
		restServerErr:   c(`klagg_api_rest_requests_total{result="server_error"}`),
		restRequests:    c(`klagg_api_rest_klines_total`),
		closeDelay:      set.GetOrCreatePrometheusHistogramExt(`klagg_api_close_delay_seconds`, closeDelayBuckets),
		restDuration:    set.GetOrCreatePrometheusHistogram(`klagg_api_rest_klines_duration_seconds`),
	}
	set.GetOrCreateGauge(`klagg_api_ws_connections`, func() float64 { return float64(s.connCount()) })
	set.GetOrCreateGauge(`klagg_api_ws_subscriptions`, func() float64 { return float64(s.subCount.Load()) })
	set.GetOrCreateGauge(`klagg_api_publish_queue_len`, func() float64 { return float64(s.hub.in.Len()) })
	return m
}
