#!/usr/bin/env python3
"""Opens N idle TCP connections to a loopback server and holds them.

Connections come from 127.0.0.1 .. 127.0.0.<SOURCES> in turn, so that many of them do not run
short of ephemeral ports; up to 256 connects are in flight at once. When all attempts are done it
prints one line to stdout, `open=<n> failed=<f> seconds=<s>`, then holds the connections (sending
nothing) until HOLD seconds have passed or it gets SIGTERM/SIGINT, and closes them by exiting.

Usage: idle_conns.py HOST PORT N [HOLD_SECONDS=60] [SOURCES=4]
"""

import errno
import resource
import selectors
import signal
import socket
import sys
import time

IN_FLIGHT = 256
CONNECT_TIMEOUT = 10.0


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit("usage: idle_conns.py HOST PORT N [HOLD_SECONDS] [SOURCES]")
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    sources = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sel = selectors.DefaultSelector()
    pending = {}  # socket -> deadline
    opened, failed, started = [], 0, 0
    t0 = time.monotonic()
    while started < n or pending:
        while started < n and len(pending) < IN_FLIGHT:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((f"127.0.0.{started % sources + 1}", 0))
                rc = s.connect_ex((host, port))
            except OSError:
                rc = -1
            started += 1
            if rc == 0:
                opened.append(s)
            elif rc == errno.EINPROGRESS:
                pending[s] = time.monotonic() + CONNECT_TIMEOUT
                sel.register(s, selectors.EVENT_WRITE)
            else:
                failed += 1
                s.close()
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            sel.unregister(s)
            del pending[s]
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                opened.append(s)
            else:
                failed += 1
                s.close()
        now = time.monotonic()
        for s in [s for s, deadline in pending.items() if deadline < now]:
            sel.unregister(s)
            del pending[s]
            failed += 1
            s.close()
    print(f"open={len(opened)} failed={failed} seconds={time.monotonic() - t0:.2f}", flush=True)
    try:
        time.sleep(hold)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
