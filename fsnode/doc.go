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
//	    data/       small regular files kept in the store with the meter
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
// call. It arrives asynchronously, after close(2) has returned. acquire is
// opened with FOPEN_NOFLUSH, so its close sends no FLUSH (answering one with
// ENOSYS would stop FLUSH for every file of the mount, data/ files too).
//
// # cat status, cat limits, holders/, waiters/
//
// Dynamic files report size 0 and are opened with FOPEN_DIRECT_IO; their
// content is a snapshot taken at open. holders/ and waiters/ entries are never
// cached by the kernel, so ls never shows stale entries.
//
// Each entry, and status, is one `key: value` per line, each key once. A
// value that comes from the caller or the store (cmd, host) is escaped with
// meter.Escape: Go's strconv.Quote without the quotes ('"' left as it is),
// so `\\` for a backslash, `\n`, `\t`, `\r`, `\xHH` for other control bytes
// and non-UTF-8 bytes (an ESC is `\x1b`), `\uHHHH` for other characters that
// do not print. An entry is named SEQ.PID, or SEQ.PID@HOST in a fleet; a
// host name in the store that is no file name (an older daemon's, with '/'
// or over 226 bytes) is escaped, '/' as `\x2f`, and cut to 255 bytes, so
// that it never fails a listing.
//
// # echo SPEC > limits
//
// Each write is parsed together with what this descriptor wrote before; a
// valid spec is persisted and applied at once (waiters are re-evaluated), an
// invalid one fails with EINVAL and changes nothing. The truncation the shell
// sends first is accepted.
//
// # data/
//
// Regular files only: create, read, write, append, truncate, rename within
// data/ (replacing the target; RENAME_NOREPLACE gives EEXIST,
// RENAME_EXCHANGE EINVAL) and unlink. mkdir, symlink, link and mknod give
// EPERM, rmdir of a file ENOTDIR, a rename out of data/ EXDEV, setxattr
// ENOTSUP. A name is 1 to 255 bytes of UTF-8 without control characters:
// longer gives ENAMETOOLONG, otherwise bad EINVAL, and nothing is stored.
// Files show the meter's owner and mode (less the execute bits); read needs
// the meter's read permission, every change its write permission (the
// kernel checks, default_permissions). A chmod or chown of a file that
// changes nothing succeeds (sed -i, cp -p); one that changes something
// gives EPERM: chmod or chown the meter.
//
// Nothing is cached: every open, stat and listing asks the store, so
// another process, or another host of a fleet, sees a change at once. A
// stat shows the size of the copy a writer changed last and has not stored
// yet, else the stored file's (Linux does not say whose descriptor a stat
// is about).
//
// An open hands out a copy. A reader's is a snapshot. A writer's replaces
// the stored file whole at the close of a process that wrote through the
// descriptor (FLUSH, which close(2) waits for): readers see the old content
// or the new, never a mix, and the new survives kill -9 once close
// returned. A process that wrote nothing through it (a forked child closing
// its inherited copy at exit or exec) stores nothing; a truncation without
// writes (O_TRUNC alone, `: > f`, ftruncate) is stored at the last close
// (RELEASE, after close(2) returned) or at fsync. O_TRUNC does not empty the
// stored file at open: the truncation is part of the new content.
// truncate(2) by path stores at once, with one exception the kernel
// forces (go-fuse does not negotiate atomic O_TRUNC, so an O_TRUNC open
// arrives as an open and then a truncation to 0 by path): a truncation to
// 0 by the thread that opened the file for writing less than a second
// before, and has not written or truncated through it since, is taken for
// that open's O_TRUNC. open(O_CREAT) of a new file stores it empty at once.
//
// Bounds, checked as writes arrive: past 1 MiB a write gets EFBIG; past
// 16 MiB for all the meter's files, ENOSPC; the 1,001st file's create
// gets ENOSPC. After a refused write every close of the descriptor returns
// the same errno and the copy is never stored: the file keeps its previous
// content, and a file this open created is taken away again.
//
// A meter's data goes with it at rmdir (EBUSY while it has holders or
// waiters, however many files it has). A descriptor or directory still
// open on a removed meter's data/ gets ENOENT, and never reaches a meter
// made again under the same name.
//
// # Everything else
//
// Creating files, unlink, rename, truncating or chmod of a meter's files
// (other than in data/) fail with EPERM.
package fsnode
