package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/rlfs/rlfs/meter"
)

// The one call path: fcall sends a library function, retries what is safe
// to retry (the library missing after FUNCTION FLUSH or a restart: load it
// again; a bounded step that replied MORE: send it again), and classifies
// every failure once (classify) into the seam's sentinels; do is the same
// for the few plain commands. Replies are decoded once, by the decoders of
// replies.go.

// callOpt changes how fcall treats a missing meter.
type callOpt int

const (
	// recheckMissing: a meter this host knows that the store does not is
	// looked for again if the store lost its data and this host put it
	// back meanwhile (a caller that puts it back itself leaves it out).
	recheckMissing callOpt = 1 << iota
)

// maxReloads is how many times one call loads the library again after
// "Function not found" before it counts the store as unreachable: a store
// that loses it again and again (flushes in a row) is treated as
// unreachable, not as failing: opens wait for it, completions are kept in
// the outbox, and the recovery loop tries again.
const maxReloads = 3

// maxSteps bounds how many times one call sends a function that replies
// MORE (a rebuild of 50 million entries takes 100,000 steps).
const maxSteps = 100_000

// errHeld is a revocation the store refused: max_hold ended the call, which
// counts as completed; it stays, to be released (meter.ErrNotExist too).
var errHeld = errors.New("redis: the call was ended by max_hold")

// errAuth marks a store that refused rlfs's user: a wrong password, or an
// ACL that does not allow what rlfs does. It is not an outage: the
// operator must fix it.
var errAuth = errors.New("redis: the store refused rlfs's user")

// fcall runs library function fn on meter name, with args after the
// prefix and the time, and decodes its reply into out. It passes the
// meter's first key (keysOf); the library derives the others, which share
// its hash tag. It returns when
// the (last) call was sent: the store's now is read at least then.
func (s *Store) fcall(ctx context.Context, fn, name string, out reply, args ...string) (time.Time, error) {
	return s.fcallOpt(ctx, fn, name, recheckMissing, out, args...)
}

func (s *Store) fcallOpt(ctx context.Context, fn, name string, opt callOpt, out reply, args ...string) (time.Time, error) {
	return s.fcallRiding(ctx, fn, name, opt, out, nil, args...)
}

// fcallRiding is fcallOpt with releases riding along (rlfs2_acquire's):
// each attempt appends their pairs (id, done) to args, the ids mapped as
// the store knows them then (a re-assert may have changed them).
func (s *Store) fcallRiding(ctx context.Context, fn, name string, opt callOpt, out reply, riders []outOp, args ...string) (time.Time, error) {
	k := keysOf(s.opt.Prefix, name)
	base := append([]string{s.opt.Prefix, ""}, args...)
	a := base
	reloads, steps := 0, 0
	for {
		if len(riders) > 0 {
			a = base[:len(base):len(base)]
			for _, r := range riders {
				a = append(a, u64(s.host.mapID(r.meter, r.id)), strconv.FormatInt(r.done, 10))
			}
		}
		a[1] = s.nowArg()
		gen := s.host.putBacks()
		cctx, cancel := s.callCtx(ctx)
		sent := s.clock.Now()
		msg, err := s.c.Do(cctx, s.c.B().Fcall().Function(fn).Numkeys(1).Key(k[0]).Arg(a...).Build()).ToMessage()
		cancel()
		if err == nil {
			if isMore(msg) {
				if steps++; steps > maxSteps {
					return sent, fmt.Errorf("redis: %s %q: still working after %d steps; look for a stuck rebuild (field rb of %s)", fn, name, maxSteps, k[0])
				}
				continue
			}
			if err := out.decode(msg); err != nil {
				return sent, fmt.Errorf("redis: %s %q: unexpected reply (%w); is a different rlfs library loaded?", fn, name, err)
			}
			return sent, nil
		}
		switch re, _ := rueidis.IsRedisErr(err); {
		case re != nil && strings.Contains(re.Error(), "Function not found"):
			if reloads++; reloads > maxReloads {
				return sent, s.unavailable(err)
			}
			if lerr := s.loadLibrary(ctx); lerr != nil {
				return sent, s.classify(ctx, "load the library", lerr)
			}
			continue
		case re != nil && strings.HasPrefix(re.Error(), "RLFS_NOMETER"):
			if opt&recheckMissing == 0 || !s.host.knows(name) {
				return sent, fmt.Errorf("%w: %q", meter.ErrNotExist, name)
			}
			switch s.lostData(ctx, gen) {
			case epochPutBack:
				opt &^= recheckMissing
				continue // the store lost its data; the meter is back
			case epochUnsure:
				return sent, s.unavailable(err) // lost, not yet put back: wait
			}
			// another host removed it
			return sent, fmt.Errorf("%w: %w: %q", meter.ErrLost, meter.ErrNotExist, name)
		}
		return sent, s.classify(ctx, fn+" "+strconv.Quote(name), err)
	}
}

// do sends a plain command and classifies its failure like fcall's; a nil
// reply is not a failure (the caller looks at the result).
func (s *Store) do(ctx context.Context, op string, cmd rueidis.Completed) (rueidis.RedisResult, error) {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	res := s.c.Do(cctx, cmd)
	if err := res.Error(); err != nil && !rueidis.IsRedisNil(err) {
		return res, s.classify(ctx, op, err)
	}
	return res, nil
}

// classify turns a failure into the seam's errors, once for every call:
//   - the caller's context ended, or the store was closed: that error,
//     nothing else is concluded;
//   - no answer (connection refused or broken, timeout, client closed) and
//     the answers of a store that cannot serve now (LOADING, MASTERDOWN,
//     CLUSTERDOWN, TRYAGAIN, READONLY after a failover made the server a
//     replica): meter.ErrUnavailable, and the recovery loop starts;
//   - WRONGPASS, NOAUTH, NOPERM, DENIED: errAuth, with the fix;
//   - the library's RLFS_NOSPACE and RLFS_NOCALL: meter.ErrNoSpace and
//     meter.ErrNotExist; RLFS_HELD (a revocation of a call that max_hold
//     ended): errHeld, which is a meter.ErrNotExist;
//   - anything else: wrapped, a failure of the store.
func (s *Store) classify(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("redis: %s: %w", op, ctx.Err())
	}
	if s.base.Err() != nil {
		return fmt.Errorf("redis: %s: %w", op, s.base.Err()) // Close
	}
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return s.unavailable(err)
	}
	msg := re.Error()
	word, rest, _ := strings.Cut(msg, " ")
	switch {
	case re.IsLoading(), re.IsClusterDown(), re.IsTryAgain(), word == "MASTERDOWN", word == "READONLY":
		return s.unavailable(err)
	case word == "WRONGPASS", word == "NOAUTH", word == "NOPERM", word == "DENIED":
		if aerr := accessError(op+" on", redacted(s.opt.URL), s.opt, err); aerr != nil {
			return fmt.Errorf("%w: %w", errAuth, aerr)
		}
		return fmt.Errorf("%w (%s: %s); check the password (in the --store URL or RLFS_STORE_PASSWORD) "+
			"and that the ACL user may run what docs/fleet.md lists (ACL SETUSER)", errAuth, op, msg)
	case word == "RLFS_NOSPACE":
		return fmt.Errorf("%w: %s", meter.ErrNoSpace, rest)
	case word == "RLFS_NOCALL":
		return fmt.Errorf("%w: %s (%s)", meter.ErrNotExist, rest, op)
	case word == "RLFS_HELD":
		return fmt.Errorf("%w: %w: %s (%s)", errHeld, meter.ErrNotExist, rest, op)
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// nowArg is the instant the library uses: "" (its own TIME) unless a test
// clock is set.
// arrived is when a reply to a call sent at sent arrived, on the engine's
// clock: now, or sent itself when the store is given the engine's clock
// (its instants are the engine's exactly).
func (s *Store) arrived(sent time.Time) time.Time {
	if s.fake {
		return sent
	}
	return s.clock.Now()
}

func (s *Store) nowArg() string {
	if !s.fake {
		return ""
	}
	return strconv.FormatInt(s.clock.Now().UnixMicro(), 10)
}
