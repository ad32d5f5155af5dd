#!/usr/bin/env python3
"""Opens N TCP connections to a loopback server in a burst; on each, as soon as it connects,
sends one request line and reads one reply; then holds every connection open.

Connections come from 127.0.0.1 .. 127.0.0.<SOURCES> in turn (so many of them do not run short of
ephemeral ports), with up to IN_FLIGHT connects at once. When every connection has its reply (or
failed) it prints one line to stdout, `open=<n> answered=<a> failed=<f> seconds=<s>`, then holds
the connections (sending nothing more) until HOLD seconds have passed or it gets SIGTERM.

Usage: burst_conns.py HOST PORT N [REQUEST=TIME] [HOLD_SECONDS=60] [SOURCES=8]
"""

import errno
import resource
import selectors
import signal
import socket
import sys
import time

IN_FLIGHT = 4096
TIMEOUT = 20.0


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit("usage: burst_conns.py HOST PORT N [REQUEST] [HOLD_SECONDS] [SOURCES]")
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    request = (sys.argv[4] if len(sys.argv) > 4 else "TIME").encode() + b"\r\n"
    hold = float(sys.argv[5]) if len(sys.argv) > 5 else 60.0
    sources = int(sys.argv[6]) if len(sys.argv) > 6 else 8
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sel = selectors.DefaultSelector()
    state = {}  # socket -> [stage, deadline, bytes so far]; stage: "connect" or "reply"
    held, answered, failed, started = [], 0, 0, 0
    t0 = time.monotonic()

    def drop(s):
        nonlocal failed
        sel.unregister(s)
        del state[s]
        failed += 1
        s.close()

    while started < n or state:
        while started < n and len(state) < IN_FLIGHT:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((f"127.0.0.{started % sources + 1}", 0))
                rc = s.connect_ex((host, port))
            except OSError:
                rc = -1
            started += 1
            if rc in (0, errno.EINPROGRESS):
                state[s] = ["connect", time.monotonic() + TIMEOUT, b""]
                sel.register(s, selectors.EVENT_WRITE)
            else:
                failed += 1
                s.close()
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            st = state[s]
            if st[0] == "connect":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    drop(s)
                    continue
                try:
                    s.send(request)
                except OSError:
                    drop(s)
                    continue
                st[0] = "reply"
                sel.modify(s, selectors.EVENT_READ)
            else:
                try:
                    chunk = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    drop(s)
                    continue
                st[2] += chunk
                if b"\n" in st[2]:
                    sel.unregister(s)
                    del state[s]
                    answered += 1
                    held.append(s)
        now = time.monotonic()
        for s in [s for s, st in state.items() if st[1] < now]:
            drop(s)
    print(
        f"open={len(held)} answered={answered} failed={failed} seconds={time.monotonic() - t0:.2f}",
        flush=True,
    )
    try:
        time.sleep(hold)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
