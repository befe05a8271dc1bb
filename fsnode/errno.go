package fsnode

import (
	"errors"
	"syscall"

	"github.com/rlfs/rlfs/meter"
)

// ToErrno maps an error onto the errno contract of design §3 (docs/semantics.md,
// "errno"): the engine's sentinels and this package's own (a name that is not
// there, a descriptor not open for the operation, …). It is the only place
// that knows errno: every node returns ToErrno(err).
func ToErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, meter.ErrWouldBlock), errors.Is(err, meter.ErrTooManyWaiters):
		return syscall.EAGAIN
	case errors.Is(err, meter.ErrInterrupted):
		return syscall.EINTR
	case errors.Is(err, meter.ErrTimeout):
		return syscall.ETIMEDOUT
	case errors.Is(err, meter.ErrTooBig):
		return syscall.E2BIG
	case errors.Is(err, meter.ErrBusy):
		return syscall.EBUSY
	case errors.Is(err, meter.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, meter.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, meter.ErrFileTooBig):
		return syscall.EFBIG
	case errors.Is(err, meter.ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, meter.ErrDataNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, errBadInput), errors.Is(err, meter.ErrBadData):
		return syscall.EINVAL
	case errors.Is(err, errNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, errNotAllowed):
		return syscall.EPERM
	case errors.Is(err, errNoXattr):
		return syscall.ENOTSUP
	case errors.Is(err, errNoEntry):
		return syscall.ENOENT
	case errors.Is(err, errFileExists):
		return syscall.EEXIST
	case errors.Is(err, errNotOpenForIt):
		return syscall.EBADF
	case errors.Is(err, errCrossDir):
		return syscall.EXDEV
	case errors.Is(err, errNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, errIsDir):
		return syscall.EISDIR
	default: // ErrClosed, ErrStore and anything unforeseen
		return syscall.EIO
	}
}

var (
	errBadInput     = errors.New("fsnode: invalid input")
	errNameTooLong  = errors.New("fsnode: name too long")
	errNotAllowed   = errors.New("fsnode: operation not allowed on a meter file")
	errNoXattr      = errors.New("fsnode: data files have no extended attributes")
	errNoEntry      = errors.New("fsnode: no such file")
	errFileExists   = errors.New("fsnode: file exists")
	errNotOpenForIt = errors.New("fsnode: the descriptor is not open for that")
	errCrossDir     = errors.New("fsnode: data files move within their data/ only")
	errNotDir       = errors.New("fsnode: data/ has no subdirectories")
	errIsDir        = errors.New("fsnode: a meter is a directory")
)
