//go:build !linux

package pipeline

import "errors"

func pinCPU(int) error { return errors.New("CPU affinity is supported on Linux only") }
