#!/usr/bin/env python3
"""An rlfs end-to-end client in Python: plain open() and close() on acquire.

    client.py calls ACQUIRE ID THREADS CALLS HOLD LOG
        THREADS threads each make CALLS calls one after the other, holding
        each HOLD seconds, and append one line per call to LOG:
        "ID-tK GRANT_NS RELEASE_NS CALL CLOSED_NS DAEMON_GRANT_NS ASKED_NS"
        (unix ns, taken right after open returns, right before close, right
        after close and right before open; CALL and DAEMON_GRANT_NS, with ms
        precision, are the call id and grant time printed by the daemon).
    client.py units ACQUIRE ID THREADS CALLS HOLD LOG COSTS ACTUALS
        weighted calls (acquire@N): as calls, but call i of each thread
        opens ACQUIRE@COST with open(p, "r+"), holds HOLD seconds, writes
        its actual cost (f.write, f.flush) and closes; COSTS and ACTUALS are
        comma-separated lists used in turn, an ACTUAL of - writes nothing.
        The log line adds "COST ACTUAL SETTLE_FROM_NS SETTLE_TO_NS" (taken
        right before the write and right after the flush returned; - when
        nothing was written) to the fields above.
    client.py writes ACQUIRE MODE
        opens ACQUIRE with MODE (rdwr, rdonly or wronly), prints "open-err
        ERRNO NAME" and exits if that fails, else "held GRANT-LINE"; then for
        each line of stdin, a JSON string, writes it to the descriptor with
        one os.write and prints "ok N" or "err ERRNO NAME"; at EOF closes
        and prints "closed".
    client.py open ACQUIRE THREADS [nonblock]
        THREADS threads each open ACQUIRE once (with O_NONBLOCK if asked)
        and close it at once; prints one line per thread when all are done:
        "ok SECONDS GRANT-LINE" or "err ERRNO NAME EXCEPTION SECONDS".
    client.py hold ACQUIRE
        opens ACQUIRE, prints "held GRANT-LINE", holds the call until stdin
        reaches EOF, prints "released NS" (taken right before close), exits.
"""
import datetime
import errno
import json
import os
import re
import sys
import threading
import time


def call_of(line):
    m = re.search(r" call (\d+)", line)
    return m.group(1) if m else "-"


def daemon_grant_ns(line):
    m = re.match(r"granted (\S+) ", line)
    if not m:
        return "-"
    dt = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    return str(round(dt.timestamp() * 1000) * 1000000)


def run_threads(threads, log, one):
    """Runs threads workers; worker k calls one(k, write) for each of its
    calls, write appending a line to log. A worker that fails is reported
    and the others go on; then the process exits 1."""
    lock = threading.Lock()
    out = open(log, "a", buffering=1)
    failures = []

    def write(line):
        with lock:
            out.write(line + "\n")

    def worker(k):
        try:
            one(k, write)
        except BaseException as e:  # report, do not hang the others
            failures.append(f"thread {k}: {e!r}")

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


def calls(acq, cid, threads, n, hold, log):
    def one(k, write):
        for _ in range(n):
            a = time.time_ns()
            fd = os.open(acq, os.O_RDONLY)
            g = time.time_ns()
            line = os.read(fd, 512).decode()
            if hold > 0:
                time.sleep(hold)
            r = time.time_ns()
            os.close(fd)
            c = time.time_ns()
            write(f"{cid}-t{k} {g} {r} {call_of(line)} {c} {daemon_grant_ns(line)} {a}")

    run_threads(threads, log, one)


def units(acq, cid, threads, n, hold, log, costs, actuals):
    def one(k, write):
        for i in range(n):
            cost, actual = costs[i % len(costs)], actuals[i % len(actuals)]
            a = time.time_ns()
            f = open(f"{acq}@{cost}", "r+")
            g = time.time_ns()
            line = f.readline()
            if hold > 0:
                time.sleep(hold)
            settled = "- - -"
            if actual != "-":
                s0 = time.time_ns()
                f.write(f"{actual}\n")
                f.flush()
                settled = f"{actual} {s0} {time.time_ns()}"
            r = time.time_ns()
            f.close()
            c = time.time_ns()
            write(f"{cid}-t{k} {g} {r} {call_of(line)} {c} - {a} {cost} {settled}")

    run_threads(threads, log, one)


def writes(acq, mode):
    flags = {"rdwr": os.O_RDWR, "rdonly": os.O_RDONLY, "wronly": os.O_WRONLY}[mode]
    try:
        fd = os.open(acq, flags)
    except OSError as e:
        print("open-err", e.errno, errno.errorcode.get(e.errno, "?"), flush=True)
        return
    line = os.read(fd, 512).decode().strip()
    print("held", line, flush=True)
    for cmd in sys.stdin:
        data = json.loads(cmd).encode()
        try:
            n = os.write(fd, data)
            print("ok", n, flush=True)
        except OSError as e:
            print("err", e.errno, errno.errorcode.get(e.errno, "?"), flush=True)
    os.close(fd)
    print("closed", flush=True)


def open_once(acq, threads, nonblock):
    flags = os.O_RDONLY | (os.O_NONBLOCK if nonblock else 0)
    results = [None] * threads

    def worker(k):
        t0 = time.monotonic()
        try:
            fd = os.open(acq, flags)
        except OSError as e:
            name = errno.errorcode.get(e.errno, "?")
            results[k] = f"err {e.errno} {name} {type(e).__name__} {time.monotonic() - t0:.3f}"
            return
        line = os.read(fd, 512).decode().strip()
        os.close(fd)
        results[k] = f"ok {time.monotonic() - t0:.3f} {line}"

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("\n".join(results), flush=True)


def hold(acq):
    fd = os.open(acq, os.O_RDONLY)
    line = os.read(fd, 512).decode().strip()
    print("held", line, flush=True)
    sys.stdin.read()
    r = time.time_ns()
    os.close(fd)
    print("released", r, flush=True)


def main(argv):
    cmd = argv[1]
    if cmd == "calls":
        acq, cid, threads, n, hold_s, log = argv[2:8]
        calls(acq, cid, int(threads), int(n), float(hold_s), log)
    elif cmd == "units":
        acq, cid, threads, n, hold_s, log, costs, actuals = argv[2:10]
        units(acq, cid, int(threads), int(n), float(hold_s), log, costs.split(","), actuals.split(","))
    elif cmd == "writes":
        writes(argv[2], argv[3])
    elif cmd == "open":
        open_once(argv[2], int(argv[3]), len(argv) > 4 and argv[4] == "nonblock")
    elif cmd == "hold":
        hold(argv[2])
    else:
        sys.exit(f"client.py: unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
