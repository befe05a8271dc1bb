package meter

import (
	"context"
	"fmt"
	"time"

	"github.com/rlfs/rlfs/meter/rule"
)

// The steps of a call's life on a Local: each locks its meter, brings the
// ledger to now, decides, persists, and tells the host after unlocking.

// Enqueue grants r at once if nobody waits and the rule admits it, else
// queues it (see Decider.Enqueue).
func (l *Local) Enqueue(ctx context.Context, name string, r Request) (Admission, error) {
	lm, now, err := l.lock(name)
	if err != nil {
		return Admission{}, err
	}
	defer lm.mu.Unlock()
	if err := lm.spec().Fits(r.Cost); err != nil {
		return Admission{}, err
	}
	if lm.queue.Len() == 0 && !lm.paused().Active(now) && lm.led.Admit(now, r.Cost).OK {
		c, err := l.grant(lm, now, r.Holder, r.Cost)
		if err != nil {
			return Admission{}, err
		}
		lm.seq++ // an arrival number for every open, queued or not
		return Admission{Granted: true, Call: c, Seq: lm.seq}, nil
	}
	switch {
	case r.Nonblock:
		return Admission{}, ErrWouldBlock
	case lm.spec().MaxWaiters > 0 && lm.queue.Len() >= lm.spec().MaxWaiters:
		return Admission{}, ErrTooManyWaiters
	}
	lm.seq++
	if lm.queue == nil {
		lm.queue = &rule.Ranked[localWaiter]{}
	}
	lm.queue.Add(lm.seq, &localWaiter{seq: lm.seq, ticket: r.Ticket, holder: r.Holder, since: now, cost: r.Cost})
	lm.ops++
	return Admission{Seq: lm.seq, Wake: lm.wakeAt(now), Head: true, Order: lm.ops}, nil
}

// grant grants a call of cost to h at now and persists it; a grant that
// cannot be persisted is taken back and fails.
func (l *Local) grant(lm *localMeter, now time.Time, h Holder, cost int64) (Call, error) {
	tat, utat := lm.led.Buckets()
	c := lm.led.Grant(now, h, cost)
	nt, nu := lm.led.Buckets()
	if err := l.store.Grant(lm.name, c, nt, nu); err != nil {
		lm.led.Ungrant(c, tat, utat)
		return Call{}, fmt.Errorf("persist grant of %q: %w", lm.name, err)
	}
	lm.grants++
	return c, nil
}

// wakeAt is when the head of the queue may be admitted (zero: nobody
// waits, or only a release can admit it).
func (lm *localMeter) wakeAt(now time.Time) time.Time {
	w := lm.queue.Front()
	if w == nil {
		return time.Time{}
	}
	if lm.paused().Active(now) {
		return lm.paused().Until // then the rule's instant
	}
	d := lm.led.Admit(now, w.cost)
	if d.OK {
		return now
	}
	return d.At
}

// dispatch grants the head of the queue while the rule admits it (a head
// whose cost no units item can admit any more is refused) and returns the
// events for the hosts: the grants, and, when somebody waited (or always,
// with tell), when to try the next head.
func (l *Local) dispatch(lm *localMeter, now time.Time, tell bool) []localEvent {
	if lm.queue.Len() == 0 && !tell {
		return nil
	}
	var evs []localEvent
	for w := lm.queue.Front(); w != nil; w = lm.queue.Front() {
		if err := lm.spec().Fits(w.cost); err != nil {
			lm.queue.Remove(w.seq)
			evs = append(evs, localEvent{ticket: w.ticket, err: err})
			continue
		}
		if lm.paused().Active(now) || !lm.led.Admit(now, w.cost).OK {
			break
		}
		lm.queue.Remove(w.seq)
		c, err := l.grant(lm, now, w.holder, w.cost)
		if err != nil {
			evs = append(evs, localEvent{ticket: w.ticket, err: err})
			continue
		}
		evs = append(evs, localEvent{ticket: w.ticket, call: c})
	}
	lm.ops++
	return append(evs, localEvent{wake: true, at: lm.wakeAt(now), order: lm.ops})
}

// Cancel takes a queued open out of the queue. A grant a Local made to it
// went to the host as an event (Granted) already: then it is Gone.
func (l *Local) Cancel(ctx context.Context, name string, seq, ticket uint64) (Admission, error) {
	lm, now, err := l.lock(name)
	if err != nil {
		return Admission{}, err
	}
	w := lm.queue.Get(seq)
	if w == nil || w.ticket != ticket {
		lm.mu.Unlock()
		return Admission{Gone: true}, nil
	}
	head := lm.queue.Front() == w
	lm.queue.Remove(seq)
	var evs []localEvent
	if head {
		evs = l.dispatch(lm, now, false)
	}
	lm.ops++
	adm := Admission{Wake: lm.wakeAt(now), Head: true, Order: lm.ops}
	lm.mu.Unlock()
	l.deliver(name, evs)
	return adm, nil
}

// Dispatch grants what the rule admits now and says when to try again.
func (l *Local) Dispatch(ctx context.Context, name string) (Admission, error) {
	lm, now, err := l.lock(name)
	if err != nil {
		return Admission{}, err
	}
	evs := l.dispatch(lm, now, false)
	lm.ops++
	adm := Admission{Wake: lm.wakeAt(now), Head: true, Order: lm.ops}
	lm.mu.Unlock()
	if n := len(evs); n > 0 && evs[n-1].wake {
		evs = evs[:n-1] // the answer says it
	}
	l.deliver(name, evs)
	return adm, nil
}

// Release completes call id now, retires what no window counts any more,
// and dispatches the queue if somebody waits.
func (l *Local) Release(ctx context.Context, name string, id uint64) error {
	lm, now, err := l.lock(name)
	if err != nil {
		return err
	}
	c, store := lm.led.Complete(id, now)
	if store {
		err = l.store.Complete(name, c)
	}
	if cutoff, changed := lm.led.Retire(now); changed {
		if rerr := l.store.Retire(name, cutoff, lm.spec().Count == CountGrant, lm.led.Past()); err == nil {
			err = rerr
		}
	}
	evs := l.dispatch(lm, now, false)
	lm.mu.Unlock()
	l.deliver(name, evs)
	return err
}

// Revoke takes back call id, in progress: nothing of it counts.
func (l *Local) Revoke(ctx context.Context, name string, id uint64) error {
	lm, now, err := l.lock(name)
	if err != nil {
		return err
	}
	if _, ok := lm.led.Revoke(id); !ok {
		lm.mu.Unlock()
		return fmt.Errorf("%w: call %d of %q is not in progress", ErrNotExist, id, name)
	}
	lm.grants--
	err = l.store.Revoke(name, id)
	evs := l.dispatch(lm, now, false)
	lm.mu.Unlock()
	l.deliver(name, evs)
	return err
}

// Settle sets the actual cost of call id.
func (l *Local) Settle(ctx context.Context, name string, id uint64, actual int64) error {
	lm, now, err := l.lock(name)
	if err != nil {
		return err
	}
	if _, ok := lm.led.Settle(id, actual, now); !ok {
		lm.mu.Unlock()
		return fmt.Errorf("%w: call %d of %q is not in progress", ErrNotExist, id, name)
	}
	_, utat := lm.led.Buckets()
	err = l.store.Settle(name, id, actual, utat)
	evs := l.dispatch(lm, now, false)
	lm.mu.Unlock()
	l.deliver(name, evs)
	return err
}

// Pause sets, extends or lifts the meter's pause and stores it.
func (l *Local) Pause(ctx context.Context, name string, p Pause) (Pause, error) {
	lm, now, err := l.lock(name)
	if err != nil {
		return Pause{}, err
	}
	next := lm.paused()
	switch {
	case p.Until.IsZero():
		next = Pause{}
	case p.Until.After(next.Until) || !next.Active(now):
		next = p
	}
	if next != lm.paused() {
		if err := l.store.SetPause(name, next); err != nil {
			lm.mu.Unlock()
			return lm.paused(), err
		}
		lm.setPause(next)
	}
	got := lm.paused()
	evs := l.dispatch(lm, now, false)
	lm.mu.Unlock()
	l.deliver(name, evs)
	return got, nil
}

// View pictures the meter at now.
func (l *Local) View(ctx context.Context, name string, q ViewQuery) (View, error) {
	lm, now, err := l.lock(name)
	if err != nil {
		return View{}, err
	}
	defer lm.mu.Unlock()
	led := lm.led
	v := View{Spec: lm.spec(), Attr: lm.attr, Now: now, Grants: lm.grants, Usage: led.Usage(),
		Buckets: led.BucketUsage(now), WaitersN: lm.queue.Len(), ExpiredTotal: lm.expired, Pause: lm.paused()}
	v.HoldersN, v.ExpiredN = led.Counts()
	v.Retired, v.RetiredSince = led.Retired()
	if w := lm.queue.Front(); w != nil {
		// A newcomer waits behind the queue: when the head may go.
		if v.Next = led.Admit(now, w.cost); v.Next.OK {
			v.Next = Decision{At: now}
		}
	} else {
		v.Next = led.Admit(now, 1)
	}
	if lm.paused().Active(now) && (v.Next.OK || (!v.Next.At.IsZero() && v.Next.At.Before(lm.paused().Until))) {
		v.Next = Decision{At: lm.paused().Until}
	}
	if q.Lists {
		v.Holders, v.Expired = led.Holders(), led.Expired()
		lm.queue.Each(func(w *localWaiter) bool {
			v.Waiters = append(v.Waiters, Waiter{Seq: w.seq, Holder: w.holder, Since: w.since, Cost: w.cost})
			return true
		})
	}
	if q.Call != 0 {
		if c, ok := led.Call(q.Call); ok {
			v.Call = &c
		}
	}
	if q.Seq != 0 {
		if w := lm.queue.Get(q.Seq); w != nil {
			v.Waiter = &Waiter{Seq: w.seq, Holder: w.holder, Since: w.since, Cost: w.cost}
			v.Place = lm.queue.Rank(q.Seq) + 1
		}
	}
	return v, nil
}

// Rewrite hands every meter with its calls to write while nothing can
// change them (a deleted database written anew).
func (l *Local) Rewrite(write func([]Stored) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := make([]Stored, 0, len(l.meters))
	for _, lm := range l.meters {
		lm.mu.Lock()
		defer lm.mu.Unlock()
		s := lm.stored()
		s.State, s.Pause = lm.led.State(), lm.paused()
		all = append(all, s)
	}
	return write(all)
}

// The data files are the store's.

func (l *Local) ListData(meter string) ([]DataFile, error) { return l.store.ListData(meter) }
func (l *Local) StatData(meter, name string) (DataFile, error) {
	return l.store.StatData(meter, name)
}
func (l *Local) ReadData(meter, name string) ([]byte, DataFile, error) {
	return l.store.ReadData(meter, name)
}
func (l *Local) WriteData(meter, name string, content []byte, mtime time.Time) error {
	return l.store.WriteData(meter, name, content, mtime)
}
func (l *Local) RenameData(meter, from, to string, mtime time.Time) error {
	return l.store.RenameData(meter, from, to, mtime)
}
func (l *Local) DeleteData(meter, name string) error { return l.store.DeleteData(meter, name) }
