// Package fsnode is the rlfs filesystem: go-fuse nodes that map file
// operations onto the meter engine. It owns errno (see ToErrno) and does no
// limit arithmetic.
//
// # Layout
//
//	MOUNT/
//	  NAME/         a meter; owner and mode are its access control
//	    acquire     open waits for a grant; read: one line about it; last close: completion
//	    limits      read: the spec, one item per line; write: replace it (validated)
//	    status      read: key: value lines (limits, usage, in progress, waiting, next grant)
//	    status.json read: the same snapshot as JSON (a meter.Report); looked up, not listed
//	    holders/    SEQ.PID per call in progress (owner = holder's uid, mtime = grant)
//	    waiters/    SEQ.PID per blocked open, in queue order
//
// # ls MOUNT, mkdir, rmdir
//
// The root lists meters. mkdir creates a meter with the default spec
// (concurrency=1: a cross-process mutex), owned by the caller with the mode
// given; rmdir removes an idle meter and fails with EBUSY while it has
// holders or waiters. chmod and chown on a meter persist; acquire and status
// take the directory's read bits, limits its read and write bits, so read
// permission decides who may acquire and write permission who may change
// limits (the mount uses default_permissions).
//
// # open(acquire)
//
// The open joins the meter's FIFO queue and returns when the meter grants a
// call: EAGAIN with O_NONBLOCK when not grantable now, EINTR when a signal
// interrupts the wait (the waiter leaves the queue, nothing is counted),
// ETIMEDOUT after max_wait, EAGAIN past max_waiters, EIO when the grant could
// not be persisted or the daemon is shutting down. Opening for writing, or
// with O_TRUNC, fails with EPERM; so does O_NOFOLLOW, at once, because cp
// and mv open what they copy with it, and copying a meter must not take a
// call.
//
// # close(acquire)
//
// The last close of the open file description (FUSE RELEASE) completes the
// call. It arrives asynchronously, after close(2) has returned. FLUSH is
// answered with ENOSYS, so the kernel stops sending it.
//
// # cat status, cat limits, holders/, waiters/
//
// Dynamic files report size 0 and are opened with FOPEN_DIRECT_IO; their
// content is a snapshot taken at open. holders/ and waiters/ entries are never
// cached by the kernel, so ls never shows stale entries.
//
// # echo SPEC > limits
//
// Each write is parsed together with what this descriptor wrote before; a
// valid spec is persisted and applied at once (waiters are re-evaluated), an
// invalid one fails with EINVAL and changes nothing. The truncation the shell
// sends first is accepted.
//
// # Everything else
//
// Creating files, unlink, rename, truncating or chmod of a meter's files fail
// with EPERM.
package fsnode
