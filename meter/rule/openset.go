package rule

// Ranked is a set of items keyed by ids added in increasing order (a
// ledger's calls in progress in grant order; Local's queue in arrival
// order), with O(1) membership and removal and an O(log n) k-th and rank
// (a Fenwick tree over positions counts the items still there). Removed
// items leave holes that a compaction squeezes out once they outnumber
// the items (amortized O(1) an item). Not safe for concurrent use; the
// zero value is empty, and so is a nil *Ranked to every method but Add
// (a meter that never had a call or a waiter allocates none).
type Ranked[T any] struct {
	calls []*T           // by id; nil: removed
	ids   []uint64       // the ids of calls
	head  int            // calls[:head] are nil
	pos   map[uint64]int // id -> index in calls
	fen   []int32        // Fenwick tree over the items' presence, 1-based, len = cap(calls)+1
	n     int            // items present
}

// openSet is a ledger's calls in progress whose hold did not end.
type openSet = Ranked[Call]

func (o *Ranked[T]) Len() int {
	if o == nil {
		return 0
	}
	return o.n
}

// add appends c, whose id is larger than every id in the set.
func (o *Ranked[T]) Add(id uint64, c *T) {
	if o.pos == nil {
		o.pos = map[uint64]int{}
	}
	if len(o.calls) == cap(o.calls) || len(o.fen) != cap(o.calls)+1 {
		o.rebuild(max(16, 2*(o.n+1)))
	}
	i := len(o.calls)
	o.calls = append(o.calls, c)
	o.ids = append(o.ids, id)
	o.pos[id] = i
	o.n++
	o.fenAdd(i, 1)
}

// get returns the item with id, or nil.
func (o *Ranked[T]) Get(id uint64) *T {
	if o == nil {
		return nil
	}
	if i, ok := o.pos[id]; ok {
		return o.calls[i]
	}
	return nil
}

// remove takes the call with id out of the set and returns it (nil if
// absent).
func (o *Ranked[T]) Remove(id uint64) *T {
	if o == nil {
		return nil
	}
	i, ok := o.pos[id]
	if !ok {
		return nil
	}
	c := o.calls[i]
	o.calls[i] = nil
	delete(o.pos, id)
	o.n--
	o.fenAdd(i, -1)
	for o.head < len(o.calls) && o.calls[o.head] == nil {
		o.head++
	}
	if dead := len(o.calls) - o.head - o.n; dead > o.n+16 || o.head > len(o.calls)/2+16 {
		o.rebuild(max(16, 2*o.n))
	}
	return c
}

// front returns the oldest item, or nil.
func (o *Ranked[T]) Front() *T {
	if o.Len() == 0 {
		return nil
	}
	return o.calls[o.head]
}

// kth returns the k-th oldest call (0-based), or nil if k ≥ len.
func (o *Ranked[T]) Kth(k int) *T {
	if k < 0 || k >= o.Len() {
		return nil
	}
	// Binary lifting: the largest position whose prefix holds ≤ k calls.
	p, rest := 0, int32(k)
	for step := highBit(len(o.fen) - 1); step > 0; step >>= 1 {
		if q := p + step; q < len(o.fen) && o.fen[q] <= rest {
			p = q
			rest -= o.fen[q]
		}
	}
	return o.calls[p] // position p+1 (1-based) is the k-th present
}

// rank returns how many items come before the item with id (its 0-based
// place), or -1 if it is not there.
func (o *Ranked[T]) Rank(id uint64) int {
	if o == nil {
		return -1
	}
	i, ok := o.pos[id]
	if !ok {
		return -1
	}
	n := int32(0)
	for j := i; j > 0; j -= j & -j {
		n += o.fen[j]
	}
	return int(n)
}

// each calls f for every call, oldest first, until f returns false.
func (o *Ranked[T]) Each(f func(*T) bool) {
	if o == nil {
		return
	}
	for _, c := range o.calls[o.head:] {
		if c != nil && !f(c) {
			return
		}
	}
}

// newest calls f for every call, newest first, until f returns false.
func (o *Ranked[T]) Newest(f func(*T) bool) {
	if o == nil {
		return
	}
	for i := len(o.calls) - 1; i >= o.head; i-- {
		if c := o.calls[i]; c != nil && !f(c) {
			return
		}
	}
}

// rebuild squeezes out the holes into a slice of capacity size and builds
// the tree again.
func (o *Ranked[T]) rebuild(size int) {
	calls := make([]*T, 0, max(size, o.n+1))
	ids := make([]uint64, 0, cap(calls))
	for i, c := range o.calls[o.head:] {
		if c != nil {
			id := o.ids[o.head+i]
			o.pos[id] = len(calls)
			calls = append(calls, c)
			ids = append(ids, id)
		}
	}
	o.calls, o.ids, o.head = calls, ids, 0
	o.fen = make([]int32, cap(calls)+1)
	for i := range calls {
		o.fen[i+1] = 1
	}
	for i := 1; i < len(o.fen); i++ { // each node passes its sum to its parent
		if j := i + i&-i; j < len(o.fen) {
			o.fen[j] += o.fen[i]
		}
	}
}

func (o *Ranked[T]) fenAdd(i int, d int32) {
	for j := i + 1; j < len(o.fen); j += j & -j {
		o.fen[j] += d
	}
}

// highBit is the largest power of two ≤ n (0 for n ≤ 0).
func highBit(n int) int {
	if n <= 0 {
		return 0
	}
	b := 1
	for b<<1 <= n {
		b <<= 1
	}
	return b
}
