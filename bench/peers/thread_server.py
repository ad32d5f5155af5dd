#!/usr/bin/env python3
"""A course-style jam server: one thread per client, as in the students' `threading.Thread`
servers, but correct: it buffers partial lines, answers every complete line, and closes on QUIT.

    TIME  -> JAM hh:mm:ss CR LF   (local time, datetime.now().strftime)
    QUIT  -> no reply, the server closes the connection
    other -> ERR unknown command CR LF

Usage: thread_server.py PORT   (listens on 127.0.0.1)
"""

import datetime
import resource
import socket
import sys
import threading


def serve_client(conn: socket.socket) -> None:
    buf = b""
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            if b"\n" not in buf:
                continue
            *lines, buf = buf.split(b"\n")
            out = []
            quit_now = False
            for raw in lines:
                cmd = raw.strip().upper()
                if cmd == b"TIME":
                    now = datetime.datetime.now().strftime("%H:%M:%S")
                    out.append(b"JAM " + now.encode() + b"\r\n")
                elif cmd == b"QUIT":
                    quit_now = True
                    break
                else:
                    out.append(b"ERR unknown command\r\n")
            if out:
                conn.sendall(b"".join(out))
            if quit_now:
                return
    except OSError:
        pass
    finally:
        conn.close()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: thread_server.py PORT")
    port = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Small stacks, so that thousands of client threads fit.
    threading.stack_size(256 * 1024)

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(socket.SOMAXCONN)
    print(f"thread_server: listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    while True:
        try:
            conn, _ = server.accept()
        except OSError as e:  # e.g. out of descriptors: keep serving the others
            print(f"thread_server: accept: {e}", file=sys.stderr, flush=True)
            threading.Event().wait(0.01)
            continue
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            threading.Thread(target=serve_client, args=(conn,), daemon=True).start()
        except RuntimeError as e:  # can't start new thread
            print(f"thread_server: {e}", file=sys.stderr, flush=True)
            conn.close()


if __name__ == "__main__":
    main()
