package main

import (
	"io"
	"os"
	"sync"
)

// stderr is the terminal the log and the backfill's progress bar share: a log
// line first clears the bar's line (the bar draws again on its next change),
// so the two never run into each other.
var stderr = &console{w: os.Stderr}

type console struct {
	mu  sync.Mutex
	w   io.Writer
	bar bool // the bar's line is on screen, without a newline
}

// logs is the writer of log lines.
func (c *console) logs() io.Writer { return consoleWriter{c, false} }

// progress is the writer of the progress bar.
func (c *console) progress() io.Writer { return consoleWriter{c, true} }

type consoleWriter struct {
	c   *console
	bar bool
}

func (w consoleWriter) Write(p []byte) (int, error) {
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !w.bar && c.bar {
		if _, err := io.WriteString(c.w, "\r\x1b[K"); err != nil {
			return 0, err
		}
	}
	c.bar = w.bar
	return c.w.Write(p)
}
