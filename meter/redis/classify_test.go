package redis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rlfs/rlfs/meter"
	"github.com/rlfs/rlfs/meter/redis/redistest"
)

// The call path classifies every failure once, whatever the call: a step
// (an FCALL replying an array), a definition (one replying an integer),
// a data file, a plain command.

// scripted is a server that speaks just enough RESP for Open, and answers
// every FCALL with a line the test sets: a store in a state a real one is
// hard to put in on demand (LOADING, MASTERDOWN, CLUSTERDOWN, TRYAGAIN).
type scripted struct {
	ln     net.Listener
	mu     sync.Mutex
	answer string // the reply to FCALL, a RESP line without CRLF
	loads  int    // FUNCTION LOADs seen
}

func startScripted(t *testing.T) *scripted {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &scripted{ln: ln, answer: ":1"}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *scripted) url() string { return "redis://" + s.ln.Addr().String() }

func (s *scripted) set(answer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = answer
}

// serve answers one connection's commands (arrays of bulk strings).
func (s *scripted) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		cmd, err := readCommand(r)
		if err != nil {
			return
		}
		var out string
		switch strings.ToUpper(cmd[0]) {
		case "HELLO":
			out = "-ERR unknown command 'HELLO'"
		case "CLUSTER":
			out = "-ERR This instance has cluster support disabled"
		case "PING":
			out = "+PONG"
		case "GET":
			out = "$5\r\nepoch"
		case "FUNCTION":
			s.mu.Lock()
			s.loads++
			s.mu.Unlock()
			out = "$5\r\nrlfs2"
		case "FCALL":
			s.mu.Lock()
			out = s.answer
			s.mu.Unlock()
		default:
			out = "+OK"
		}
		if _, err := io.WriteString(c, out+"\r\n"); err != nil {
			return
		}
	}
}

func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil {
		return nil, fmt.Errorf("not an array: %q", line)
	}
	out := make([]string, n)
	for i := range n {
		head, err := r.ReadString('\n') // $LEN
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
		if err != nil {
			return nil, fmt.Errorf("not a bulk string: %q", head)
		}
		arg := make([]byte, size+2)
		if _, err := io.ReadFull(r, arg); err != nil {
			return nil, err
		}
		out[i] = string(arg[:size])
	}
	return out, nil
}

// callKinds runs one call of each kind the store makes and returns their
// errors, by name.
func callKinds(s *Store) map[string]error {
	ctx := context.Background()
	_, enq := s.Enqueue(ctx, "m", meter.Request{Ticket: 1, Cost: 1, Nonblock: true})
	_, view := s.View(ctx, "m", meter.ViewQuery{})
	return map[string]error{
		"Enqueue (a step)":         enq,
		"Release (kept if down)":   nil,
		"CreateMeter (an integer)": s.CreateMeter(ctx, "m", meter.DefaultSpec(), meter.DefaultAttr()),
		"SetAttr":                  s.SetAttr(ctx, "m", meter.DefaultAttr()),
		"DeleteMeter":              s.DeleteMeter(ctx, "m"),
		"View":                     view,
		"WriteData":                s.WriteData("m", "f", []byte("x"), time.Now()),
	}
}

func TestCallPathClassifies(t *testing.T) {
	fake := startScripted(t)
	s := bareStore(t, fake.url(), "a", Options{Lease: 3 * time.Second})
	for _, tc := range []struct {
		answer string
		want   error // a sentinel every call's error wraps
		text   string
	}{
		{"-LOADING Redis is loading the dataset in memory", meter.ErrUnavailable, "LOADING"},
		{"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", meter.ErrUnavailable, "MASTERDOWN"},
		{"-CLUSTERDOWN The cluster is down", meter.ErrUnavailable, "CLUSTERDOWN"},
		{"-TRYAGAIN Multiple keys request during rehashing of slot", meter.ErrUnavailable, "TRYAGAIN"},
		{"-READONLY You can't write against a read only replica.", meter.ErrUnavailable, "READONLY"},
		{"-WRONGPASS invalid username-password pair or user is disabled.", errAuth, "check the password"},
		{"-NOAUTH Authentication required.", errAuth, "RLFS_STORE_PASSWORD"},
		{"-NOPERM User rl has no permissions to run the 'fcall' command", errAuth, "ACL SETUSER"},
		{"-DENIED Redis is running in protected mode", errAuth, "docs/fleet.md"},
		{"-RLFS_NOMETER no such meter", meter.ErrNotExist, `"m"`},
		{"-RLFS_NOSPACE the meter has 1000 data files", meter.ErrNoSpace, "1000 data files"},
	} {
		fake.set(tc.answer)
		for kind, err := range callKinds(s) {
			if kind == "Release (kept if down)" {
				continue
			}
			if tc.want == meter.ErrNoSpace && kind != "WriteData" {
				continue // only a data file answers it
			}
			require.ErrorIs(t, err, tc.want, "%s answered %q", kind, tc.answer)
			require.ErrorContains(t, err, tc.text, "%s answered %q", kind, tc.answer)
			if tc.want != meter.ErrUnavailable {
				require.NotErrorIs(t, err, meter.ErrUnavailable, "%s answered %q", kind, tc.answer)
			}
		}
	}
	fake.set("-ERR something unexpected")
	for kind, err := range callKinds(s) {
		if kind == "Release (kept if down)" {
			continue
		}
		require.Error(t, err, kind)
		require.False(t, errors.Is(err, meter.ErrUnavailable) || errors.Is(err, errAuth) || errors.Is(err, meter.ErrNotExist),
			"%s answered an unknown error: a store failure, got %v", kind, err)
		require.ErrorContains(t, err, "something unexpected", kind)
	}
}

// "Function not found" (FUNCTION FLUSH, a restart without persistence) is
// answered by loading the library again and sending the call again, up to
// maxReloads times; a store that keeps losing it counts as unreachable.
func TestCallPathReloadsTheLibrary(t *testing.T) {
	fake := startScripted(t)
	s := bareStore(t, fake.url(), "a", Options{Lease: 3 * time.Second})
	fake.mu.Lock()
	before := fake.loads
	fake.mu.Unlock()
	fake.set("-ERR Function not found")
	_, err := s.Enqueue(context.Background(), "m", meter.Request{Ticket: 1, Cost: 1, Nonblock: true})
	require.ErrorIs(t, err, meter.ErrUnavailable, "a library lost again and again")
	fake.mu.Lock()
	loads := fake.loads - before
	fake.mu.Unlock()
	require.Equal(t, 2*maxReloads, loads, "FUNCTION LOADs (the library and the fence) before giving up")

	srv := redistest.Start(t)
	r := bareStore(t, srv.URL(), "a", Options{})
	ctx := context.Background()
	require.NoError(t, r.CreateMeter(ctx, "m", meter.DefaultSpec(), meter.DefaultAttr()))
	require.Equal(t, "+OK", redistest.Command(srv.Addr(), "FUNCTION", "FLUSH"))
	adm, err := r.Enqueue(ctx, "m", meter.Request{Ticket: 1, Cost: 1, Nonblock: true})
	require.NoError(t, err, "Enqueue after FUNCTION FLUSH")
	require.True(t, adm.Granted)
	require.Zero(t, r.Health().Failures, "a flush is not an outage")
}

// Regression: after a failover demoted the server rlfs talks to (a
// replica now: READONLY to every write), the calls that replied an array
// counted the store as unreachable (opens wait) and those that replied an
// integer (create, chmod, rmdir, data files) failed with a store error
// (EIO). Every call is unreachable now; once the server is a primary again
// the store serves.
func TestReadOnlyAfterFailoverIsUnreachable(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	s := bareStore(t, a.URL(), "h", Options{Lease: 3 * time.Second})
	ctx := context.Background()
	require.NoError(t, s.CreateMeter(ctx, "m", meter.DefaultSpec(), meter.DefaultAttr()))
	require.Equal(t, "+OK", redistest.Command(a.Addr(), "REPLICAOF", "127.0.0.1", strconv.Itoa(b.Port)))
	for kind, err := range callKinds(s) {
		if kind == "Release (kept if down)" {
			continue
		}
		require.ErrorIs(t, err, meter.ErrUnavailable, "%s on a demoted server", kind)
	}
	require.False(t, s.Health().Down.IsZero(), "the store counts as unreachable")
	require.Equal(t, "+OK", redistest.Command(a.Addr(), "REPLICAOF", "NO", "ONE"))
	require.Eventually(t, func() bool { return s.Health().Down.IsZero() }, 10*time.Second, 10*time.Millisecond,
		"the store is reachable again once the server is a primary")
	require.Eventually(t, func() bool {
		adm, err := s.Enqueue(ctx, "m", meter.Request{Ticket: 9, Cost: 1, Nonblock: true})
		return err == nil && adm.Granted
	}, 10*time.Second, 50*time.Millisecond, "a grant on the promoted server (the meter put back, the library loaded)")
}

// A closed server: unreachable, and the completions made meanwhile wait.
func TestClosedServerIsUnreachable(t *testing.T) {
	srv := redistest.Start(t)
	s := bareStore(t, srv.URL(), "h", Options{Lease: 3 * time.Second})
	ctx := context.Background()
	require.NoError(t, s.CreateMeter(ctx, "m", meter.DefaultSpec(), meter.DefaultAttr()))
	adm, err := s.Enqueue(ctx, "m", meter.Request{Ticket: 1, Cost: 1, Nonblock: true})
	require.NoError(t, err)
	srv.Kill()
	for kind, err := range callKinds(s) {
		if kind == "Release (kept if down)" {
			continue
		}
		require.ErrorIs(t, err, meter.ErrUnavailable, "%s on a closed server", kind)
	}
	require.NoError(t, s.Release(ctx, "m", adm.Call.ID), "a release while the store is down is kept")
	require.Len(t, s.host.takeOutbox(false), 1, "the outbox")
}

// A password changed, or a permission taken away, under a running host:
// its calls fail with the problem and the fix, not as an outage.
func TestAuthFailuresNameTheFix(t *testing.T) {
	srv := redistest.Start(t)
	require.Equal(t, "+OK", redistest.Command(srv.Addr(), "ACL", "SETUSER", "rl", "on", ">pw", "~*", "&*", "+@all"))
	s := bareStore(t, "redis://rl:pw@"+srv.Addr(), "h", Options{Lease: 3 * time.Second})
	ctx := context.Background()
	require.NoError(t, s.CreateMeter(ctx, "m", meter.DefaultSpec(), meter.DefaultAttr()))
	require.Equal(t, "+OK", redistest.Command(srv.Addr(), "ACL", "SETUSER", "rl", "-fcall"))
	_, err := s.Enqueue(ctx, "m", meter.Request{Ticket: 1, Cost: 1, Nonblock: true})
	require.ErrorIs(t, err, errAuth, "FCALL taken away")
	require.ErrorContains(t, err, "NOPERM")
	require.ErrorContains(t, err, "ACL SETUSER")
	require.NotErrorIs(t, err, meter.ErrUnavailable)
	require.Equal(t, "+OK", redistest.Command(srv.Addr(), "ACL", "SETUSER", "rl", "+fcall", "resetpass", ">other"))
	redistest.Command(srv.Addr(), "CLIENT", "KILL", "USER", "rl")
	require.Eventually(t, func() bool {
		_, err = s.Enqueue(ctx, "m", meter.Request{Ticket: 2, Cost: 1, Nonblock: true})
		return errors.Is(err, errAuth)
	}, 5*time.Second, 20*time.Millisecond, "a call after the password changed: %v", err)
	require.ErrorContains(t, err, "WRONGPASS")
	require.ErrorContains(t, err, "check the password")
}
