package fsnode

import (
	"errors"
	"syscall"

	"github.com/rlfs/rlfs/meter"
)

// ToErrno maps an engine error onto the errno contract of design §3. It is the
// only place that knows errno.
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
	default: // ErrClosed, ErrStore and anything unforeseen
		return syscall.EIO
	}
}

var (
	errBadInput    = errors.New("fsnode: invalid input")
	errNameTooLong = errors.New("fsnode: name too long")
	errNotAllowed  = errors.New("fsnode: operation not allowed on a meter file")
	errNoXattr     = errors.New("fsnode: data files have no extended attributes")
)
