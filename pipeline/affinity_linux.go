package pipeline

import "golang.org/x/sys/unix"

// pinCPU binds the calling OS thread (locked by the caller) to one CPU.
func pinCPU(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}
