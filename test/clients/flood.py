"""Opens many weighted calls at once and settles each: the attack of issue 15.

usage: flood.py MOUNT/METER N COST SETTLE

Opens N descriptors of MOUNT/METER/acquire@COST with O_RDWR (all held at
once), writes SETTLE to each, prints "settled N", then tries three
O_NONBLOCK opens of acquire@SETTLE and prints "try OK|ERRNO-NAME" for each.
Holds everything until stdin closes, then closes all and prints "closed".
"""
import errno
import os
import resource
import sys


def main():
    meter, n, cost, settle = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    fds = []
    for _ in range(n):
        fds.append(os.open(os.path.join(meter, "acquire@" + cost), os.O_RDWR))
    for fd in fds:
        os.write(fd, (settle + "\n").encode())
    print("settled", len(fds), flush=True)
    for _ in range(3):
        try:
            fd = os.open(os.path.join(meter, "acquire@" + settle), os.O_RDONLY | os.O_NONBLOCK)
            os.close(fd)
            print("try OK", flush=True)
        except OSError as e:
            print("try", errno.errorcode.get(e.errno, str(e.errno)), flush=True)
    sys.stdin.read()
    for fd in fds:
        os.close(fd)
    print("closed", flush=True)


main()
