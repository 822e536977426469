//go:build invariants

package parse

const invariants = true
