#!/usr/bin/env python3
r"""requests_client.py: HTTP calls with Python requests under an rlfs meter,
where a 429 pauses every caller of the meter, not only this one.

Each call holds the meter while it runs:

    with open(f"{mnt}/api/acquire", "r+") as turn:   # waits for a grant
        r = session.get(url)                         # the call
        if r.status_code in (429, 503):              # the server says: slow down
            os.write(turn.fileno(), f"retry-after {r.headers['Retry-After']}\n".encode())
    # the close completes the call; the meter grants nothing until the pause ends

"r+" opens the descriptor for reading and writing (O_RDWR), which a
`retry-after` line needs; os.write sends the line in one write(2), at once
(turn.write would wait in Python's buffer until the close). The line
pauses the meter for exactly what the server said (seconds, or an
HTTP-date), capped at the meter's max_pause: every process waiting on the
meter, on this host or any host of a fleet, waits for the pause, and keeps
its place in the queue. The client retries at
once: its next open is the one that waits. A 429 without Retry-After pauses
for FALLBACK_PAUSE.

Run it:  rlfs mount --meter 'api=concurrency=1' /mnt/rl &   then
         API_URL=http://127.0.0.1:8080/ ./requests_client.py
Env:     RLFS_MNT (default /mnt/rl), METER (default api), API_URL (required),
         REQUESTS (default 5), MAX_RETRIES (default 5: retries of one request
         before giving up), FALLBACK_PAUSE (default 5s)

Prints one line per answer, "request I: STATUS ..." and exits 0 when every
request got a 2xx; 1 otherwise.
"""
import os
import sys

try:
    import requests
except ImportError:
    sys.exit("requests_client: the requests module is missing: apt-get install python3-requests (or pip install requests)")

MNT = os.environ.get("RLFS_MNT", "/mnt/rl")
METER = os.environ.get("METER", "api")
URL = os.environ.get("API_URL", "")
REQUESTS = int(os.environ.get("REQUESTS", "5"))
MAX_RETRIES = int(os.environ.get("MAX_RETRIES", "5"))
FALLBACK = os.environ.get("FALLBACK_PAUSE", "5s")


def call(session, acquire, i):
    """One attempt of request i, holding the meter. Returns the status."""
    with open(acquire, "r+") as turn:  # blocks until the meter grants
        r = session.get(URL, timeout=30)
        if r.status_code in (429, 503):
            value = r.headers.get("Retry-After") or FALLBACK
            try:  # one write(2) on the descriptor, before the close
                os.write(turn.fileno(), f"retry-after {value}\n".encode())
                print(f"request {i}: {r.status_code}, retry-after {value}: meter paused", flush=True)
            except OSError as e:  # EINVAL: a value the meter cannot read
                print(f"request {i}: {r.status_code}, retry-after {value!r} refused ({e.strerror}); pausing {FALLBACK}", flush=True)
                os.write(turn.fileno(), f"retry-after {FALLBACK}\n".encode())
        else:
            print(f"request {i}: {r.status_code} {r.text.strip()}", flush=True)
        return r.status_code


def main():
    if not URL:
        sys.exit("requests_client: set API_URL, such as http://127.0.0.1:8080/")
    acquire = os.path.join(MNT, METER, "acquire")
    if not os.path.exists(acquire):
        sys.exit(f"requests_client: no meter at {os.path.dirname(acquire)}; start rlfs with --meter '{METER}=concurrency=1'")
    ok = throttled = 0
    with requests.Session() as session:
        for i in range(1, REQUESTS + 1):
            for _ in range(MAX_RETRIES + 1):
                status = call(session, acquire, i)
                if status not in (429, 503):
                    break
                throttled += 1
            if 200 <= status < 300:
                ok += 1
    print(f"requests_client: {ok} of {REQUESTS} requests done, {throttled} throttled answers", flush=True)
    return 0 if ok == REQUESTS else 1


if __name__ == "__main__":
    sys.exit(main())
