#!/usr/bin/env python3
"""Clients for rlfs's fault-injection tests (faults*_test.go).

    faults.py loop ACQUIRE ID HOLD STOPFILE LOG ERRS
        Makes calls on ACQUIRE one after the other until STOPFILE exists,
        holding each a random time up to HOLD seconds. It survives the
        daemon's death: a failed open (ENOTCONN, ECONNABORTED, ENOENT once the
        dead mount is detached, EIO at shutdown) is written to ERRS as
        "open ERRNO NS ASKED_NS" (unix ns: when it failed, and when the open
        was issued) and retried 20 ms later. Each call granted is appended
        to LOG as the checker reads it (checker_test.go):
        "ID GRANT_NS RELEASE_NS CALL CLOSED_NS - ASKED_NS"; a failed read or
        close of a granted call is written to ERRS ("read|close ERRNO NS
        ASKED_NS", ASKED_NS of the call's open) and the call is still logged.
    faults.py waiters ACQUIRE THREADS
        THREADS threads each make one blocking open of ACQUIRE; prints
        "ready" once all threads are started, then, when all are answered,
        one line per thread: "err ERRNO NS ASKED_NS" or "ok NS ASKED_NS" (unix
        ns taken right after the open returned or failed, and right before
        it).
    faults.py cycles ACQUIRE N
        N open+close cycles, as fast as possible; prints "done N SECONDS".
    faults.py ops JSON [STATUS]
        JSON is a list of [name, op, path, arg]; op is open (arg: a list of
        flag names such as ["O_WRONLY", "O_CREAT"]), unlink, rename (arg: the
        new path) or truncate (arg: the size). Prints a JSON object: name ->
        {"errno": 0 on success or the errno, "status": the text of the file
        STATUS read right after the operation, if given}. An open that
        succeeds is closed at once.
"""
import json
import os
import random
import sys
import threading
import time


def call_of(line):
    for part in line.split(" call ")[1:]:
        num = part.split()[0] if part.split() else ""
        if num.isdigit():
            return num
    return "-"


def loop(acq, cid, hold, stopfile, log, errs):
    out = open(log, "a", buffering=1)
    err = open(errs, "a", buffering=1)
    while not os.path.exists(stopfile):
        a = time.time_ns()
        try:
            fd = os.open(acq, os.O_RDONLY)
        except OSError as e:
            err.write(f"open {e.errno} {time.time_ns()} {a}\n")
            time.sleep(0.02)
            continue
        g = time.time_ns()
        call = "-"
        try:
            call = call_of(os.read(fd, 512).decode())
        except OSError as e:
            err.write(f"read {e.errno} {time.time_ns()} {a}\n")
        if hold > 0:
            time.sleep(random.uniform(0, hold))
        r = time.time_ns()
        try:
            os.close(fd)
        except OSError as e:
            err.write(f"close {e.errno} {time.time_ns()} {a}\n")
        c = time.time_ns()
        out.write(f"{cid} {g} {r} {call} {c} - {a}\n")


def waiters(acq, threads):
    results = [None] * threads

    def worker(k):
        a = time.time_ns()
        try:
            fd = os.open(acq, os.O_RDONLY)
        except OSError as e:
            results[k] = f"err {e.errno} {time.time_ns()} {a}"
            return
        results[k] = f"ok {time.time_ns()} {a}"
        os.close(fd)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    print("ready", flush=True)
    for t in ts:
        t.join()
    print("\n".join(results), flush=True)


def cycles(acq, n):
    t0 = time.monotonic()
    for _ in range(n):
        os.close(os.open(acq, os.O_RDONLY))
    print(f"done {n} {time.monotonic() - t0:.3f}", flush=True)


def ops(spec, status=None):
    res = {}
    for name, op, path, arg in json.loads(spec):
        no = 0
        try:
            if op == "open":
                flags = 0
                for f in arg:
                    flags |= getattr(os, f)
                os.close(os.open(path, flags, 0o644))
            elif op == "unlink":
                os.unlink(path)
            elif op == "rename":
                os.rename(path, arg)
            elif op == "truncate":
                os.truncate(path, arg)
            else:
                raise SystemExit(f"faults.py: unknown op {op}")
        except OSError as e:
            no = e.errno
        text = ""
        if status:
            with open(status) as f:
                text = f.read()
        res[name] = {"errno": no, "status": text}
    print(json.dumps(res), flush=True)


def main(argv):
    cmd = argv[1]
    if cmd == "loop":
        acq, cid, hold, stopfile, log, errs = argv[2:8]
        loop(acq, cid, float(hold), stopfile, log, errs)
    elif cmd == "waiters":
        waiters(argv[2], int(argv[3]))
    elif cmd == "cycles":
        cycles(argv[2], int(argv[3]))
    elif cmd == "ops":
        ops(argv[2], argv[3] if len(argv) > 3 else None)
    else:
        sys.exit(f"faults.py: unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
