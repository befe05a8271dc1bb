package redis

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rlfs/rlfs/meter"
)

// hostState's books: the outbox, the id remap, the definitions this host
// knows, the store's epoch, and the journal that keeps them (journal.go
// is the file).

// The outbox.

// postpone keeps a completion (or revocation) in the outbox, journaled,
// until the store takes it: a release is sent from there (releases.go), and
// what the store could not take waits there until it is back.
func (h *hostState) postpone(o outOp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.outbox = append(h.outbox, o)
	h.journalLocked(jrec{K: "out", M: o.meter, ID: o.id, D: o.done, Rev: o.revoke})
	id := o.id
	if nu, ok := h.remap[o.meter][id]; ok {
		id = nu
	}
	if p := h.meters[o.meter]; p != nil {
		if c, ok := p.calls[id]; ok {
			if o.revoke {
				delete(p.calls, id)
			} else {
				c.done = o.done
				p.calls[id] = c
			}
		}
	}
}

// takeOutbox empties the outbox and returns what it held, in order: the
// caller delivers it, and hands back what the store did not take
// (returnOutbox) or says how many it took (settled). With sendable, the
// releases that wait for an acquire to carry them (lingers), and what
// follows them of their meter (in order), stay.
func (h *hostState) takeOutbox(sendable bool) []outOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.outbox
	if sendable {
		out = nil
		var stay []outOp
		eachSendable(h.outbox, func(o outOp, send bool) bool {
			if send {
				out = append(out, o)
			} else {
				stay = append(stay, o)
			}
			return true
		})
		h.outbox = stay
	} else {
		h.outbox = nil
	}
	h.inflight += len(out)
	return out
}

// eachSendable calls f with each of ops in order, and whether the sender
// may take it: not a release that waits for an acquire to carry it
// (lingers), nor what follows one of its meter. It stops when f returns
// false.
func eachSendable(ops []outOp, f func(o outOp, send bool) bool) {
	var held map[string]bool // meters with a lingering release
	for _, o := range ops {
		send := !o.lingers && !held[o.meter]
		if !send {
			if held == nil {
				held = map[string]bool{}
			}
			held[o.meter] = true
		}
		if !f(o, send) {
			return
		}
	}
}

// lingered records that the release whose settled channel is settled
// waits for an acquire no longer: the sender may take it.
func (h *hostState) lingered(settled chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.outbox {
		if h.outbox[i].settled == settled {
			h.outbox[i].lingers = false
			return
		}
	}
}

// takeRiders takes from the outbox, in order, at most n releases of meter
// name that no revocation of it precedes, looking at its first
// riderLook operations only (an outbox a long outage filled is not
// scanned by every acquire): an acquire of that meter carries them
// (releases.go). Like takeOutbox's, they are on their way until returned
// or settled.
func (h *hostState) takeRiders(name string, n int) []outOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []outOp
	look, kept := min(len(h.outbox), riderLook), 0
	for i := range look {
		o := h.outbox[i]
		if o.meter == name && (o.revoke || len(out) == n) {
			look = i // a revocation of it comes between: nothing after it
			break
		}
		if o.meter == name {
			out = append(out, o)
			continue
		}
		h.outbox[kept] = o
		kept++
	}
	if len(out) > 0 {
		rest := copy(h.outbox[kept:], h.outbox[look:])
		clear(h.outbox[kept+rest:])
		h.outbox = h.outbox[:kept+rest]
		h.inflight += len(out)
	}
	return out
}

// riderLook is how many of the outbox's first operations takeRiders
// looks at.
const riderLook = 4 * maxReleases

// returnOutbox puts back, before what came since, the operations taken
// that the store did not take.
func (h *hostState) returnOutbox(rest []outOp) {
	if len(rest) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	back := make([]outOp, 0, len(rest)+len(h.outbox))
	for _, o := range rest {
		o.lingers = false // on its way, and back: the sender takes it
		back = append(back, o)
	}
	h.outbox = append(back, h.outbox...)
	h.inflight -= len(rest)
}

// settled records that the store took n operations taken.
func (h *hostState) settled(n int) {
	if n == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inflight -= n
	h.unsent = true
}

// noteSent journals, once the outbox is empty and nothing is on its way,
// that the store took what the journal put in it: a replay after a crash
// does not deliver it again. The renewal loop calls it (one record a
// tick, not one a release): a replay may deliver again the releases of the
// last tick, which the store took already: that changes nothing (a call's
// id is never given again while the store keeps its data, and Load drops
// the outbox of a store that lost it).
func (h *hostState) noteSent() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.unsent && len(h.outbox) == 0 && h.inflight == 0 {
		h.journalLocked(jrec{K: "sent"})
		h.unsent = false
	}
}

// dropOutbox empties the outbox without delivering it (the store lost its
// data: the ids it holds name calls of another store; their ends are in
// the books, which re-assert puts back).
func (h *hostState) dropOutbox() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.outbox) > 0 {
		h.outbox = nil
		h.journalLocked(jrec{K: "sent"})
	}
}

// pending reports whether the outbox holds operations.
func (h *hostState) pending() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.outbox) > 0
}

// sendable reports whether the outbox holds an operation the sender may
// take (takeOutbox(true)).
func (h *hostState) sendable() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	found := false
	eachSendable(h.outbox, func(_ outOp, send bool) bool {
		found = send
		return !send
	})
	return found
}

// The remap: call ids the store changed when this host put them back.

// mapID is the store's id of the call the engine knows as id.
func (h *hostState) mapID(name string, id uint64) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if nu, ok := h.remap[name][id]; ok {
		return nu
	}
	return id
}

// remapped records the ids (old, new) the store gave the calls put back.
func (h *hostState) remapped(name string, ids [][2]uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.meters[name]
	for _, on := range ids {
		old, nu := on[0], on[1]
		if old == nu || p == nil {
			continue
		}
		if h.remap == nil {
			h.remap = map[string]map[uint64]uint64{}
		}
		if h.remap[name] == nil {
			h.remap[name] = map[uint64]uint64{}
		}
		h.remap[name][old] = nu
		if c, ok := p.calls[old]; ok {
			delete(p.calls, old)
			p.calls[nu] = c
		}
	}
}

// callRecords lists, by meter, this host's calls that still count, as
// rlfs2_reassert takes them.
func (h *hostState) callRecords() map[string][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	calls := map[string][]string{}
	for name, p := range h.meters {
		for id, c := range p.calls {
			calls[name] = append(calls[name], reassertRecord(id, c))
		}
	}
	return calls
}

// reassertRecord is call id as rlfs2_reassert takes it.
func reassertRecord(id uint64, c ownCall) string {
	cost := c.cost
	if cost == 0 && c.granted != 0 {
		cost = 1 // a journal of an earlier version kept no cost
	}
	return strings.Join([]string{u64(id), strconv.FormatInt(c.granted, 10),
		strconv.FormatInt(c.done, 10), strconv.FormatInt(cost, 10), "-1", u64(c.ticket), strconv.Itoa(c.holder.PID),
		u64(uint64(c.holder.UID)), u64(uint64(c.holder.GID))}, ",")
}

// The definitions this host knows, to put them back should the store
// lose its data.

func (h *hostState) remember(m meter.Stored) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m.State, m.Grants = meter.State{}, 0
	if old, ok := h.defs[m.Name]; !ok || !old.Spec.Equal(m.Spec) || old.Attr != m.Attr {
		h.journalLocked(defRec(m))
	}
	h.defs[m.Name] = m
}

func (h *hostState) setDef(name string, f func(*meter.Stored)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m, ok := h.defs[name]; ok {
		f(&m)
		h.defs[name] = m
		h.journalLocked(defRec(m))
	}
}

// knows reports whether this host knows meter name's definition.
func (h *hostState) knows(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.defs[name]
	return ok
}

func (h *hostState) forget(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.defs[name]; ok {
		delete(h.defs, name)
		h.journalLocked(jrec{K: "undef", M: name})
	}
}

// definitions lists the meters this host knows.
func (h *hostState) definitions() []meter.Stored {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]meter.Stored, 0, len(h.defs))
	for _, d := range h.defs {
		out = append(out, d)
	}
	return out
}

// missingFrom lists the meters this host knows that names lacks.
func (h *hostState) missingFrom(names map[string]bool) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var gone []string
	for n := range h.defs {
		if !names[n] {
			gone = append(gone, n)
		}
	}
	return gone
}

// The epoch.

// epochIs reports whether e is the epoch this host last saw.
func (h *hostState) epochIs(e string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return e == h.epoch
}

// putBacks counts the times this host put back what the store lost; a
// caller reads it before it looks for a meter (Store.lostData).
func (h *hostState) putBacks() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reasserts
}

// reasserted records that this host put back its part of the store's
// data, now of epoch e.
func (h *hostState) reasserted(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.epoch = e
	h.journalLocked(jrec{K: "epoch", E: e})
	h.reasserts++
}

// takeLostWhileDown reports, once, that the store lost its data while this
// host's daemon was stopped.
func (h *hostState) takeLostWhileDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	lost := h.lostWhileDown
	h.lostWhileDown = false
	return lost
}

// The journal.

// openJournal locks and replays the journal at path; it returns the epoch
// the journal last saw.
func (h *hostState) openJournal(path string) (string, error) {
	j, recs, err := openJournal(path, h.name)
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.jl = j
	return h.replayLocked(recs), nil
}

// started records the store's epoch at Open and rewrites the journal.
func (h *hostState) started(epoch, journalEpoch string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.epoch = epoch
	h.lostWhileDown = journalEpoch != "" && journalEpoch != epoch
	if h.jl == nil {
		return nil
	}
	if err := h.jl.rewrite(h.snapshotLocked()); err != nil {
		return fmt.Errorf("redis: rewrite the journal %s: %v", h.jl.path, err)
	}
	return nil
}

func (h *hostState) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.jl.close()
	h.jl = nil
}

// replayLocked rebuilds, from the journal's records, the meters this host
// knew, its calls, its undelivered completions and the epoch it last saw.
func (h *hostState) replayLocked(recs []jrec) (epoch string) {
	for _, r := range recs {
		switch r.K {
		case "epoch":
			epoch = r.E
		case "def":
			if spec, err := meter.ParseSpec(r.Spec); err == nil {
				h.defs[r.M] = meter.Stored{Name: r.M, Spec: spec, Attr: meter.Attr{Mode: r.Mode, UID: r.UID, GID: r.GID}}
			}
		case "undef":
			delete(h.defs, r.M)
		case "call":
			h.partLocked(r.M).calls[r.ID] = ownCall{ticket: r.Ticket, granted: r.G, done: r.D, cost: r.C,
				holder: meter.Holder{PID: r.PID, Host: h.name}}
		case "done", "gone":
			if p := h.meters[r.M]; p != nil {
				if c, ok := p.calls[r.ID]; ok && r.K == "done" {
					c.done = r.D
					p.calls[r.ID] = c
				} else if r.K == "gone" {
					delete(p.calls, r.ID)
				}
			}
		case "out":
			h.outbox = append(h.outbox, outOp{meter: r.M, id: r.ID, done: r.D, revoke: r.Rev})
		case "sent":
			h.outbox = nil
		}
	}
	return epoch
}

// journalLocked appends r, compacting the journal when it grew large; the
// caller holds h.mu. A failed write is logged once: the journal is then
// behind (what it misses is what this host could not put back after a loss
// of the store's data), and the grants go on.
func (h *hostState) journalLocked(r jrec) {
	j := h.jl
	if j == nil {
		return
	}
	err := j.write(r)
	if err == nil && j.compactDue() {
		err = j.rewrite(h.snapshotLocked())
	}
	if err != nil && !j.bad {
		h.log.Warn("the fleet journal cannot be written; this host could not put its calls back should the store lose its data", "journal", j.path, "err", err)
	}
	j.bad = err != nil
}

// snapshotLocked is what the journal must hold now.
func (h *hostState) snapshotLocked() []jrec {
	recs := []jrec{{K: "epoch", E: h.epoch}}
	for _, d := range h.defs {
		recs = append(recs, defRec(d))
	}
	for name, p := range h.meters {
		for id, c := range p.calls {
			recs = append(recs, jrec{K: "call", M: name, ID: id, Ticket: c.ticket, G: c.granted, D: c.done, C: c.cost, PID: c.holder.PID})
		}
	}
	for _, o := range h.outbox {
		recs = append(recs, jrec{K: "out", M: o.meter, ID: o.id, D: o.done, Rev: o.revoke})
	}
	return recs
}

func defRec(d meter.Stored) jrec {
	return jrec{K: "def", M: d.Name, Spec: d.Spec.String(), Mode: d.Attr.Mode, UID: d.Attr.UID, GID: d.Attr.GID}
}

func u64(v uint64) string { return strconv.FormatUint(v, 10) }
