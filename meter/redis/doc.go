// Package redis is rlfs's decider for a fleet: the meters of several hosts
// kept in one Redis 7 (or a Cluster, or behind Sentinel), where the
// admission rule, the FIFO queue and the hosts' leases run atomically as
// the functions of one library, rlfs.lua (library rlfs2). A Store
// implements meter.Decider and meter.Reachability: the engine (meter) keeps
// the host's side of every call (tickets, wake-ups, signals, descriptors)
// and asks the Store for each step of a call's life, one round trip each.
// docs/engine.md is the model both deciders keep; docs/fleet.md is the
// operator's manual.
//
// # What lives where
//
//	store.go      the session: Options, Open (connect, load the library and
//	              the fence, replay the journal, read the epoch), Close
//	call.go       the one call path: fcall sends a function, sends it again
//	              while it replies MORE (a bounded step under way), loads
//	              the library again when a flush lost it, and classifies
//	              every failure once (classify): no answer, LOADING,
//	              MASTERDOWN, CLUSTERDOWN, TRYAGAIN, READONLY ->
//	              meter.ErrUnavailable; WRONGPASS, NOAUTH, NOPERM, DENIED ->
//	              errAuth with the fix; RLFS_NOMETER -> meter.ErrNotExist (or
//	              meter.ErrLost, for a meter this host knew and another
//	              removed); do is the same for the few plain commands
//	replies.go    typed replies: one struct and one decoder per reply kind,
//	              and the call and waiter records; no other file reads a
//	              reply by position
//	host.go,      hostState, this host's part of the fleet in one type: its
//	hostbook.go   lease on each meter and the proof that it holds (fencing),
//	              its calls and queued tickets, the outbox of completions
//	              the store could not take, the id remap, the meters it
//	              knows, the store's clock, the epoch, the journal
//	journal.go    the journal file (JSON lines, locked, compacted)
//	steps.go      Enqueue, Cancel, Dispatch, Release, Revoke, Settle
//	events.go     pub/sub: grants, refusals and wake instants for this host,
//	              meters changed on any host; the mailbox that delivers them
//	renew.go      the renewal loop: every lease/3, this host's lease on each
//	              meter where it has calls or waiters, and the grants whose
//	              messages it missed
//	meters.go     Load, LoadMeter, CreateMeter, SetSpec (and its rebuild),
//	              SetAttr, DeleteMeter
//	view.go       View: counts, usage, the next grant; lists in chunks
//	data.go       data files
//	reassert.go   the store's epoch; putting back what it lost
//	reconcile.go  a meter that may have lost its last writes (a failover,
//	              a restart from the AOF): what the store shows of this
//	              host's against its books, put right both ways
//	outage.go     unreachable since when, the recovery loop, Health
//	keys.go       keysOf: every key of a meter, under one hash tag
//	spec.go       a spec as the library's fields
//	legacy.go     the engine's previous seam (meter.SharedStore), until the
//	              engine takes a meter.Decider
//	rlfs.lua      the library; fence.lua replaces the previous library
//	              (rlfs1) with functions that refuse, so that a daemon of
//	              the previous version still running cannot write records
//	              of the previous layout
//
// # Keys
//
// A meter's keys share the hash tag {PREFIX:NAME} (one Cluster slot): m
// (its definition: spec fields, owner, version), s (its hot state: every
// counter, the windows' starts and sums, packed as doubles, read and
// written whole by every step), c (records of calls in progress or held
// after max_hold), o (calls in progress by grant, kept only with max_hold),
// l (the ledger: what counts against the windows, by count time), lo
// (count=grant: calls in progress that count in no window), lg (history
// groups put back into the ledger), p (the history), q, w, t (the queue,
// its waiters, tickets), h (the hosts' leases), d, dm (data files), nl (a
// rebuild's scratch), and per host oh:HOST, wh:HOST (its calls, its
// waiters), and ra (the calls put back since the meter was last unsettled:
// reconcile.go). Every function is given one key, m; the library derives the
// others from its tag. Besides: {PREFIX}:meters (the names) and
// {PREFIX}:epoch; channels PREFIX:h:HOST (to one host) and PREFIX:ev (to
// all).
//
// # Fast paths
//
// An acquire on a meter nobody waits on, with nothing due to age or
// expire, is one FCALL that reads the hot state, the host's lease entry and
// TIME, checks the rule on counters, and writes the call's record, the
// host's set and the hot state. A release reads and deletes its record,
// adds the call to the ledger (to the history, on a meter without windows)
// and writes the hot state; it dispatches only when someone waits. Leases
// are renewed by the renewal loop; a step renews one only when it is a
// third of the lease old, and replies its expiry: the host uses a grant
// only before it (fencing).
//
// # Bounded steps
//
// No FCALL reads more than a bounded number of entries, whatever the
// meter's size: ageing and expiry 256 (each entry leaves each window once),
// a lapsed host's calls 128, a rebuild after a limits write 256 (the
// writing host sends rlfs2_rebuild until it is done; nothing is granted
// meanwhile), a migration of a meter of the previous layout 256, a release
// retires at most 512 ledger entries into the history (then compacts it,
// as meter.State does), a re-assert 128 records, a list 256 records; a
// meter is removed with UNLINK. A step whose work before deciding is not
// done replies MORE, having changed nothing else, and the Store sends it
// again (call.go).
package redis
