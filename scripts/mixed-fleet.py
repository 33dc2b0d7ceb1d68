#!/usr/bin/env python3
"""A rolling upgrade, end to end: workers of two builds on one queue, confirmation tracking checked.

Starts a private redis-server and `envshare sandbox --preset clean`, then, on one queue:
  1. the OLD worker alone works batch b-old;
  2. the NEW worker joins and both work batch b-mixed;
  3. the OLD worker stops (SIGTERM) and the NEW one works batch b-new.
Each batch is 200 one-appid jobs. Half of each batch's administrators confirm (their
confirmation URLs are opened), with a confirmation schedule of 2 s and 4 s and a window of 8 s.
Then it checks, per batch: every accepted appid got exactly one share.bound or
share.unconfirmed, the confirmed half bound, and one batch.confirmed. Exit 0 when all hold.

Usage:
    git worktree add /tmp/envshare-old OLD_COMMIT
    cargo build --release -p envshare-worker --manifest-path /tmp/envshare-old/Cargo.toml \\
        --target-dir /tmp/envshare-old-target
    cargo build --release -p envshare-worker -p envshare-cli
    scripts/mixed-fleet.py /tmp/envshare-old-target/release/envshare-worker \\
        target/release/envshare-worker target/release/envshare

Needs redis-server on PATH and python3 with redis-py (pip install redis). Uses ports 6403
(Redis), 9311 (sandbox), 9401 and 9402 (the workers' HTTP endpoints); --port-base moves them.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import redis

QUEUE = "mixed"
ENV = "prod-mixed"
JOBS = 200


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_worker")
    ap.add_argument("new_worker")
    ap.add_argument("cli", help="the envshare binary (import, sandbox)")
    ap.add_argument("--port-base", type=int, default=0, help="added to every port")
    args = ap.parse_args()
    redis_port, sandbox_port = 6403 + args.port_base, 9311 + args.port_base
    tmp = tempfile.mkdtemp(prefix="mixed-fleet-")
    procs = []

    def spawn(cmd, env=None, log=None):
        out = open(os.path.join(tmp, log), "w") if log else subprocess.DEVNULL
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=out)
        procs.append(p)
        return p

    spawn(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"])
    r = redis.Redis(port=redis_port)
    for _ in range(50):
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    spawn([args.cli, "sandbox", "--addr", f"127.0.0.1:{sandbox_port}", "--preset", "clean"])
    time.sleep(1)
    env = dict(os.environ, ENVSHARE_REDIS_URL=f"redis://127.0.0.1:{redis_port}",
               ENVSHARE_QUEUE=QUEUE, ENVSHARE_WECHAT_BASE_URL=f"http://127.0.0.1:{sandbox_port}",
               ENVSHARE_ACCESS_TOKEN="sandbox-access-token",
               ENVSHARE_CONFIRM_SCHEDULE="2s,4s", ENVSHARE_CONFIRM_WINDOW="8s",
               ENVSHARE_CONCURRENCY="16", RUST_LOG="warn")
    stream = "envshare:{%s}:events" % QUEUE

    def worker(binary, port):
        e = dict(env, ENVSHARE_HTTP_ADDR=f"127.0.0.1:{port + args.port_base}")
        return spawn([binary], env=e, log=f"worker-{port}.log")

    def events():
        return [json.loads(f[b"event"]) for _, f in r.xrange(stream)]

    def import_batch(name, base):
        path = os.path.join(tmp, name + ".csv")
        with open(path, "w") as fh:
            fh.write("env,appid\n")
            for i in range(JOBS):
                fh.write(f"{ENV},wx{base + i:016x}\n")
        out = subprocess.run([args.cli, "import", path, "--batch", name, "--chunk-size", "1",
                              "--json"], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"import {name} failed: {out.stderr}")

    def confirm_half(batch):
        """Opens the confirmation URLs of the even appids; returns those appids."""
        done = set()
        for e in events():
            if (e["type"] == "share.accepted" and e["batch_id"] == batch and e.get("confirm_url")
                    and int(e["appid"][-4:], 16) % 2 == 0):
                urllib.request.urlopen(e["confirm_url"]).read()
                done.add(e["appid"])
        return done

    ok = True
    try:
        old = worker(args.old_worker, 9401)
        confirmed = {}
        import_batch("b-old", 0x1000)
        time.sleep(3)
        confirmed["b-old"] = confirm_half("b-old")
        worker(args.new_worker, 9402)
        import_batch("b-mixed", 0x2000)
        time.sleep(3)
        confirmed["b-mixed"] = confirm_half("b-mixed")
        old.send_signal(signal.SIGTERM)
        old.wait(60)
        import_batch("b-new", 0x3000)
        time.sleep(3)
        confirmed["b-new"] = confirm_half("b-new")
        time.sleep(14)
        ev = events()
        stats = {k.decode(): v.decode() for k, v in r.hgetall("envshare:{%s}:stats" % QUEUE).items()}
        print(f"jobs completed: {stats.get('completed')}, by the new build: "
              f"{stats.get('completed_direct', 0)}")
        for b in ("b-old", "b-mixed", "b-new"):
            mine = [e for e in ev if e.get("batch_id") == b]
            accepted = {e["appid"] for e in mine if e["type"] == "share.accepted"}
            bound = [e["appid"] for e in mine if e["type"] == "share.bound"]
            unconfirmed = [e["appid"] for e in mine if e["type"] == "share.unconfirmed"]
            batch_confirmed = sum(e["type"] == "batch.confirmed" for e in mine)
            settled = bound + unconfirmed
            twice = len(settled) - len(set(settled))
            missing = len(accepted - set(settled))
            good = (len(accepted) == JOBS and twice == 0 and missing == 0
                    and set(bound) == confirmed[b] and batch_confirmed == 1)
            ok &= good
            print(f"{b}: accepted {len(accepted)}, bound {len(bound)} (confirmed "
                  f"{len(confirmed[b])}), unconfirmed {len(unconfirmed)}, settled twice {twice}, "
                  f"never settled {missing}, batch.confirmed {batch_confirmed}: "
                  f"{'ok' if good else 'WRONG'}")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
    print("ok" if ok else f"FAILED (logs in {tmp})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
