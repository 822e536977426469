//go:build !invariants

package parse

// invariants switches on expensive self-checks (build tag "invariants").
const invariants = false
