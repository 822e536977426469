package parse

// Counters counts frames by Kind and errors by Reason. A Counters belongs to
// the goroutine that owns the Decoder: plain integers, no atomics; the
// pipeline copies them out.
type Counters struct {
	Frames    [NumKinds]uint64   // every frame decoded, by Kind (malformed frames count as KindOther)
	Errors    [NumReasons]uint64 // every failed frame, by Reason
	Fallbacks uint64             // frames the fast path handed to a general engine
}

// Add adds other to c.
func (c *Counters) Add(other *Counters) {
	for i := range c.Frames {
		c.Frames[i] += other.Frames[i]
	}
	for i := range c.Errors {
		c.Errors[i] += other.Errors[i]
	}
	c.Fallbacks += other.Fallbacks
}
