package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rlfs/rlfs/meter"
)

// rlfs run's pause (design §10): when the command says the upstream is
// overloaded (its exit status, or a Retry-After it left in a file), rlfs run
// writes `retry-after X` to its acquire descriptor before it closes it, so
// that every caller of the meter waits, not only this one.

// pauseOnExit is --pause-on-exit CODE=DURATION, repeatable: the pause to set
// when the command exits with CODE. The zero value is no flag given.
type pauseOnExit map[int]string

func (p *pauseOnExit) String() string {
	if p == nil || len(*p) == 0 {
		return ""
	}
	codes := make([]int, 0, len(*p))
	for c := range *p {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var s []string
	for _, c := range codes {
		s = append(s, fmt.Sprintf("%d=%s", c, (*p)[c]))
	}
	return strings.Join(s, ",")
}

// Set takes CODE=DURATION: an exit status from 0 to 255 and a pause as the
// pause file reads it (30s, 1.5m, whole seconds), not 0 (which would lift a
// pause rather than set one).
func (p *pauseOnExit) Set(s string) error {
	code, d, ok := strings.Cut(s, "=")
	if !ok {
		return errors.New("want CODE=DURATION, such as 22=30s (curl --fail exits 22 on an HTTP error)")
	}
	n, err := strconv.Atoi(strings.TrimSpace(code))
	if err != nil || n < 0 || n > 255 {
		return fmt.Errorf("the exit status %q is not a whole number from 0 to 255", code)
	}
	d = strings.TrimSpace(d)
	if err := checkPauseText(d); err != nil {
		return err
	}
	if *p == nil {
		*p = pauseOnExit{}
	}
	if old, dup := (*p)[n]; dup {
		return fmt.Errorf("exit status %d given twice (%s and %s); give each status once", n, old, d)
	}
	(*p)[n] = d
	return nil
}

// checkPauseText checks a pause to set, as the daemon will read it.
func checkPauseText(d string) error {
	now := time.Now()
	until, lift, err := meter.ParsePause(d, now)
	switch {
	case err != nil:
		return errors.New("want a pause such as 30s, 1.5m or 120 (seconds)")
	case lift:
		return fmt.Errorf("%s would lift a pause, not set one; give a duration such as 30s", d)
	case !until.After(now):
		return fmt.Errorf("%s is in the past; give a duration such as 30s", d)
	}
	return nil
}

// maxPauseFile bounds what rlfs run reads of a --pause-from-file: a dump
// of response headers is a few kilobytes.
const maxPauseFile = 1 << 20

// prepPauseFile empties the --pause-from-file before the command runs, so
// that what a previous run left there cannot pause the meter. A missing
// file is fine: the command creates it (curl -D does).
func prepPauseFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--pause-from-file %s: %w; give a file rlfs run may empty before the command runs (such as one from mktemp)", path, err)
	}
	return f.Close()
}

// fileSays is what the command left in the pause file.
type fileSays struct {
	value  string // a Retry-After value; "" if none
	where  string // where value came from, for messages
	status int    // the last response's status in a header dump; 0 if not one
}

// slowDown reports whether status is an answer whose Retry-After asks
// the client to wait: 429 Too Many Requests, 503 Service Unavailable.
func slowDown(status int) bool { return status == 429 || status == 503 }

// retryAfterIn reads the pause the command left in the file at path. The
// file is either response headers as curl -D writes them (only a
// Retry-After of the last response, and only if that response is a 429 or
// a 503, counts: with 3xx the header means something else), or text a
// script wrote: a line `retry-after X`, or the value alone (echo 30 >
// "$RLFS_PAUSE_FILE"). A missing or empty file says nothing.
func retryAfterIn(path string) (fileSays, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileSays{}, nil
	}
	if err != nil {
		return fileSays{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPauseFile))
	if err != nil {
		return fileSays{}, err
	}
	if bytes.HasPrefix(bytes.TrimLeft(b, "\r\n"), []byte("HTTP/")) {
		status, v := lastResponseRetryAfter(b)
		if v == "" || !slowDown(status) {
			return fileSays{status: status}, nil
		}
		return fileSays{value: v, where: fmt.Sprintf("Retry-After of HTTP %d in %s", status, path), status: status}, nil
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	for _, l := range lines {
		if v, ok := retryAfterValue(l); ok {
			return fileSays{value: v, where: "retry-after in " + path}, nil
		}
	}
	if len(lines) == 1 {
		return fileSays{value: lines[0], where: path}, nil
	}
	if len(lines) > 1 {
		return fileSays{}, fmt.Errorf("%d lines and none is retry-after X; write the value alone (echo 30 > FILE)", len(lines))
	}
	return fileSays{}, nil
}

// lastResponseRetryAfter reads a dump of response headers (one block per
// response: a status line, header lines, a blank line): the status of the
// last response and its Retry-After ("" if it has none).
func lastResponseRetryAfter(dump []byte) (status int, retryAfter string) {
	sc := bufio.NewScanner(bytes.NewReader(dump))
	sc.Buffer(make([]byte, 64<<10), maxPauseFile)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "HTTP/") {
			status, retryAfter = 0, ""
			if f := strings.Fields(line); len(f) >= 2 {
				status, _ = strconv.Atoi(f[1])
			}
			continue
		}
		if v, ok := retryAfterValue(line); ok {
			retryAfter = v
		}
	}
	return status, retryAfter
}

// retryAfterValue reads a line `Retry-After: X` (a header) or `retry-after
// X` (as written to an acquire descriptor), case-insensitive.
func retryAfterValue(line string) (string, bool) {
	const key = "retry-after"
	if len(line) <= len(key) || !strings.EqualFold(line[:len(key)], key) {
		return "", false
	}
	rest := line[len(key):]
	if rest[0] != ':' && rest[0] != ' ' && rest[0] != '\t' {
		return "", false
	}
	v := strings.TrimSpace(strings.TrimLeft(rest, " \t:"))
	return v, v != ""
}

// pauseAfter decides and sets the pause after the command exited with
// status code. What the command left in the pause file (the server's own
// word) decides first: its Retry-After pauses for that; a response that is
// not a 429 or 503 (a 404, a 200) pauses nothing. Else (no file, nothing
// in it, a 429 without a usable Retry-After) the --pause-on-exit for that
// status applies. It writes `retry-after X` to the call's descriptor fd,
// before its close, and says so on stderr. Nothing here changes rlfs run's
// exit status: a pause that cannot be set is said on stderr.
func pauseAfter(o runOptions, fd, code int, stderr io.Writer) {
	value, why, decided := "", "", false
	if o.pauseFile != "" {
		says, err := retryAfterIn(o.pauseFile)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "rlfs run: --pause-from-file %s: %v\n", o.pauseFile, err)
		case says.value != "":
			value, why, decided = fileValue(says.value, says.where, stderr)
		case says.status != 0 && !slowDown(says.status):
			decided = true // the server answered, and not "slow down"
		}
	}
	if d, ok := o.pauseOnExit[code]; ok && !decided {
		value, why = d, fmt.Sprintf("--pause-on-exit %d=%s", code, d)
	}
	if value == "" {
		return
	}
	if err := writeRetryAfter(fd, value); err != nil {
		fmt.Fprintf(stderr, "rlfs run: could not pause %s (%s): %v\n", o.meterDir, why, err)
		return
	}
	fmt.Fprintf(stderr, "rlfs run: the command exited %d; paused %s: retry-after %s (%s)\n", code, o.meterDir, value, why)
}

// fileValue checks a Retry-After found in the pause file. One that is no
// duration, seconds or HTTP-date is said on stderr and ignored (decided
// false: --pause-on-exit still applies); 0, or a date in the past, is the
// server saying "retry now": no pause, decided.
func fileValue(v, where string, stderr io.Writer) (value, why string, decided bool) {
	now := time.Now()
	until, lift, err := meter.ParsePause(v, now)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "rlfs run: %s: %q is no pause (want seconds, a duration or an HTTP-date); not paused by it\n", where, v)
		return "", "", false
	case lift || !until.After(now):
		return "", "", true
	}
	return v, where, true
}

// writeRetryAfter writes the line `retry-after value` to an acquire
// descriptor opened O_RDWR, in one write.
func writeRetryAfter(fd int, value string) error {
	line := []byte("retry-after " + value + "\n")
	for {
		n, err := syscall.Write(fd, line)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return err
		case n != len(line):
			return fmt.Errorf("short write (%d of %d bytes)", n, len(line))
		}
		return nil
	}
}

// exitStatus is the status rlfs run exits with for runHolding's result.
func exitStatus(err error) int {
	var ce *codeError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce):
		return ce.code
	}
	return 1
}
