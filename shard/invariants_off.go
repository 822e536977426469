//go:build !invariants

package shard

// invariants enables expensive consistency checks that panic with "BUG: ...".
const invariants = false
