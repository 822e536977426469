//go:build !invariants

package ring

// invariants switches on the expensive checks: ones that load the other side's
// atomic index or walk memory. Tests run with -tags invariants.
const invariants = false
