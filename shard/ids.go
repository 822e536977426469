package shard

import "slices"

// maxRuns bounds the id ranges a symbol remembers. Past it the two closest
// ranges merge, and the ids between them count as applied from then on
// (Counters.RunMerges): memory stays bounded whatever the input.
const maxRuns = 16

// idRange is a run of consecutive applied aggTrade ids [lo, hi].
type idRange struct{ lo, hi int64 }

// idRuns is the set of aggTrade ids applied to one symbol, as disjoint ranges.
// A duplicate is an id already applied, not any id below the highest seen: one
// bogus id far ahead (a corrupt frame) adds a range of its own, and the real
// ids that follow keep extending theirs. cur is the range the last id extended,
// so a trade in sequence costs one comparison.
type idRuns struct {
	cur   idRange
	other []idRange // the other ranges, sorted by lo; nil in the common case
}

func newIDRuns(id int64) idRuns { return idRuns{cur: idRange{id, id}} }

// last is the id of the newest trade in sequence: the end of the current run.
func (r *idRuns) last() int64 { return r.cur.hi }

// add records id; it reports false if id was applied already. merged reports
// that the ranges overflowed maxRuns and two of them were joined.
func (r *idRuns) add(id int64) (added, merged bool) {
	if id == r.cur.hi+1 {
		r.cur.hi = id
		if len(r.other) > 0 {
			r.joinNext()
		}
		return true, false
	}
	return r.addSlow(id)
}

// contains reports whether id was applied.
func (r *idRuns) contains(id int64) bool {
	if id >= r.cur.lo && id <= r.cur.hi {
		return true
	}
	for _, o := range r.other {
		if id >= o.lo && id <= o.hi {
			return true
		}
	}
	return false
}

func (r *idRuns) addSlow(id int64) (added, merged bool) {
	if r.contains(id) {
		return false, false
	}
	// Every range, sorted, with id inserted and neighbours joined; the range
	// holding id becomes current.
	all := append(r.other, r.cur)
	all = append(all, idRange{id, id})
	slices.SortFunc(all, func(a, b idRange) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	out := all[:1]
	for _, x := range all[1:] {
		if last := &out[len(out)-1]; x.lo <= last.hi+1 {
			last.hi = max(last.hi, x.hi)
		} else {
			out = append(out, x)
		}
	}
	for len(out) > maxRuns {
		// Join the two ranges with the smallest hole between them.
		best := 0
		for i := 1; i+1 < len(out); i++ {
			if out[i+1].lo-out[i].hi < out[best+1].lo-out[best].hi {
				best = i
			}
		}
		out[best].hi = out[best+1].hi
		out = slices.Delete(out, best+1, best+2)
		merged = true
	}
	for i, x := range out {
		if id >= x.lo && id <= x.hi {
			r.cur = x
			r.other = slices.Delete(out, i, i+1)
			break
		}
	}
	if len(r.other) == 0 {
		r.other = nil
	}
	return true, merged
}

// joinNext joins cur with the range right after it once they touch.
func (r *idRuns) joinNext() {
	for i, o := range r.other {
		if o.lo == r.cur.hi+1 {
			r.cur.hi = o.hi
			r.other = slices.Delete(r.other, i, i+1)
			if len(r.other) == 0 {
				r.other = nil
			}
			return
		}
	}
}
