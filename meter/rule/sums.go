package rule

// sum is an exact sum of units: hi·2^32 + lo, 0 ≤ lo < 2^32. A call costs
// at most 2^50 units and a history group counts at most MaxUsage, so hi
// grows by at most 2^21 a term: no count of calls a meter can remember
// makes it wrap, and every decision compares exact sums (rlfs.lua keeps
// the same two numbers, exact in Lua's doubles). Its zero value is 0.
type sum struct{ hi, lo int64 }

const sumBase = 1 << 32

// add adds u ≥ 0.
func (s *sum) add(u int64) {
	s.hi += u >> 32
	s.lo += u & (sumBase - 1)
	if s.lo >= sumBase {
		s.lo -= sumBase
		s.hi++
	}
}

// sub subtracts u ≥ 0, added before.
func (s *sum) sub(u int64) {
	s.hi -= u >> 32
	s.lo -= u & (sumBase - 1)
	if s.lo < 0 {
		s.lo += sumBase
		s.hi--
	}
}

// plus returns s + t.
func (s sum) plus(t sum) sum {
	s.hi += t.hi
	s.lo += t.lo
	if s.lo >= sumBase {
		s.lo -= sumBase
		s.hi++
	}
	return s
}

// value is the sum, saturated at MaxUsage (2^53 = 2^21·2^32).
func (s sum) value() int64 {
	if s.hi >= MaxUsage>>32 {
		return MaxUsage
	}
	return s.hi<<32 + s.lo
}
