#!/usr/bin/env python3
"""Grades every student-style fixture server (tests/fixtures/servers/) with a jam binary and prints
one row per server: each must/should case's status (. pass, F fail, T timeout, s skip), the run
time and the exit code. Used for the before/after table of docs/benchmarks.md.

Usage: bench/check_students.py JAM [FIXTURE...]
  JAM        the jam binary (e.g. target/release/jam, or an older build to compare)
  FIXTURE    file names without .py (default: all)
Environment: TZ_FOR_BOTH runs server and checker in that zone (e.g. WIB-7); PAR servers at once
(default 2); DETAIL=1 prints each non-passing case's detail.
"""
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "..", "tests", "fixtures", "servers")
ORDER = ["connect", "time-format", "repeat", "quit", "concurrent", "split-line", "pipelined",
         "time-correct", "many-clients", "unknown-command", "lf-only", "bad-bytes"]
MARK = {"pass": ".", "fail": "F", "timeout": "T", "skip": "s"}


def grade(jam, name):
    env = dict(os.environ)
    if os.environ.get("TZ_FOR_BOTH"):
        env["TZ"] = os.environ["TZ_FOR_BOTH"]
    server = subprocess.Popen([sys.executable, os.path.join(SERVERS, name + ".py")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        port = server.stdout.readline().strip()
        started = time.monotonic()
        out = subprocess.run([jam, "check", "--json", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, env=env, timeout=60)
        took = time.monotonic() - started
    finally:
        server.kill()
        server.wait()
    cases = {c["id"]: c for c in json.loads(out.stdout)["targets"][0]["cases"]}
    return name, cases, took, out.returncode


def main():
    jam = sys.argv[1]
    names = sys.argv[2:] or sorted(f[:-3] for f in os.listdir(SERVERS) if f.endswith(".py"))
    with cf.ThreadPoolExecutor(int(os.environ.get("PAR", "2"))) as pool:
        rows = list(pool.map(lambda n: grade(jam, n), names))
    print(f"{'server':22} " + " ".join(f"{i[:5]:>5}" for i in ORDER) + "   time exit")
    for name, cases, took, code in rows:
        marks = " ".join(f"{MARK[cases[i]['status']]:>5}" for i in ORDER)
        print(f"{name:22} {marks} {took:5.1f} s {code:>3}")
    if os.environ.get("DETAIL"):
        for name, cases, _, _ in rows:
            print(f"\n{name}")
            for i in ORDER:
                if cases[i]["status"] != "pass":
                    print(f"  {i} {cases[i]['status']}: {cases[i]['detail']}")


if __name__ == "__main__":
    main()
