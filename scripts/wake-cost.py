#!/usr/bin/env python3
"""What one call costs Redis when Redis was idle before it: the price of a wake-up.

In the regime users run (jobs that wait on WeChat), Redis sleeps between the workers' calls,
and every call wakes it: the kernel's wake-up and context switch, and caches that the other
processes (workers, the API client) have used meanwhile. None of that shows in an instruction
count (callgrind), but all of it is Redis CPU time, and it is paid per call, not per job.

This starts a private redis-server (no persistence) pinned to core 0, and from one client pinned
to core 1 sends PINGs one at a time with a pause of GAP ms after each reply, for each GAP, then
the same number of PINGs in one pipeline (Redis never sleeps: the hot cost of a PING). Redis's
CPU time comes from the scheduler's own account (/proc/PID/schedstat, in ns), not from clock
ticks. It prints one JSON object: µs of Redis CPU per call for each gap.

Usage:
    scripts/wake-cost.py [--calls N] [--port P] [--gaps 0,1,2,5,10]

Needs Linux, redis-server on PATH, taskset (util-linux) and python3 with redis-py
(pip install redis).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import redis


def redis_cpu_ns(pid):
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="PINGs per gap (default 2000)")
    ap.add_argument("--port", type=int, default=6430, help="the private Redis's port")
    ap.add_argument("--gaps", default="0,1,2,5,10", help="pauses after each reply, ms")
    opts = ap.parse_args()
    gaps = [float(g) for g in opts.gaps.split(",") if g.strip()]
    pin = (os.cpu_count() or 1) >= 2
    cmd = ["redis-server", "--port", str(opts.port), "--save", "", "--appendonly", "no"]
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
        os.sched_setaffinity(0, {1})
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=opts.port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            sys.exit(f"redis-server on port {opts.port} did not answer")
        pid = int(r.info("server")["process_id"])
        out = {"calls": opts.calls, "pinned": pin, "us_per_call": {}}
        for gap in gaps:
            start = redis_cpu_ns(pid)
            for _ in range(opts.calls):
                r.ping()
                if gap:
                    time.sleep(gap / 1000)
            out["us_per_call"][f"gap {gap:g} ms"] = round(
                (redis_cpu_ns(pid) - start) / 1000 / opts.calls, 2)
        pipe = r.pipeline(transaction=False)
        for _ in range(opts.calls):
            pipe.ping()
        start = redis_cpu_ns(pid)
        pipe.execute()
        out["us_per_call"]["pipelined"] = round(
            (redis_cpu_ns(pid) - start) / 1000 / opts.calls, 2)
        print(json.dumps(out))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
