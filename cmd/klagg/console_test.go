package main

import (
	"bytes"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A log line while the progress bar is drawn clears the bar's line first; the
// bar's next draw follows the line.
func TestConsoleLogClearsBar(t *testing.T) {
	var out bytes.Buffer
	c := &console{w: &out}
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zapcore.EncoderConfig{MessageKey: "msg"}),
		zapcore.AddSync(c.logs()), zapcore.InfoLevel))
	log.Info("first")
	c.progress().Write([]byte("\rbackfill  40% |####      |"))
	log.Info("second")
	log.Info("third")
	c.progress().Write([]byte("\rbackfill  50% |#####     |"))
	want := "first\n\rbackfill  40% |####      |\r\x1b[Ksecond\nthird\n\rbackfill  50% |#####     |"
	if out.String() != want {
		t.Fatalf("console wrote %q, want %q", out.String(), want)
	}
}
