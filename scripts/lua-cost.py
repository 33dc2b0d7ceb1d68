#!/usr/bin/env python3
"""Redis time per job of the queue's Lua scripts, driven as the worker drives them.

Runs enqueue.lua, claim.lua and complete.lua (each after prelude.lua and lib.lua, as the
binaries load them) straight from a folder of .lua files against a Redis, and prints the time
Redis spent in them per job (`INFO commandstats`, EVALSHA usec), the least of several rounds.
Point --lua at an edited copy of shared/src/store/lua to compare a change to the scripts with
the current ones in seconds, without a Rust build; confirm the winner with envshare-bench.

The arguments are built as shared/src/store/{producer,lease}.rs build them (one-appid share
jobs, every appid accepted with a result row): keep this in step with them.

Usage: scripts/lua-cost.py [--lua DIR] [--redis URL] [--jobs N] [--claim C] [--rounds R]
Needs: python3 with redis-py (pip install redis). Uses its own queue name and deletes its keys
afterwards; still, point it at a private Redis (`redis-server --port 6401 --save ''`), since
it resets the server's command statistics.
"""

import argparse
import json
import os
import time
import uuid

import redis

KEY_NAMES = ["jobs", "ready", "scheduled", "running", "state", "fence", "dead", "dead:info",
             "events", "dedupe", "pause", "workers", "stats", "batches", "wake", "confirm",
             "confirm:info"]
ENV = "prod-env"
BATCH = "b-01M8Y8RG05KZBJ5CA5VN50CVTT"
SLICE = 500


def script(lua_dir, body):
    parts = [os.path.join(lua_dir, f) for f in ("prelude.lua", "lib.lua", body)]
    return "".join(open(p, encoding="utf-8").read() for p in parts)


class Queue:
    def __init__(self, r, lua_dir):
        self.r = r
        self.prefix = f"envshare:{{luacost-{uuid.uuid4().hex[:8]}}}:"
        self.keys = [self.prefix + n for n in KEY_NAMES]
        self.sha = {n: r.script_load(script(lua_dir, n + ".lua"))
                    for n in ("enqueue", "claim", "complete")}

    def common(self):
        now = int(time.time() * 1000)
        at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now / 1000))
        return [str(now), at, self.prefix, "100000"]

    def call(self, name, argv):
        return self.r.evalsha(self.sha[name], len(self.keys), *self.keys, *argv)

    def clear(self):
        for k in self.r.scan_iter(self.prefix + "*", count=1000):
            self.r.delete(k)


def evalsha_usec(r):
    return r.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0)


def job_id(i):
    return "01M8Y8RG05KZ" + ("%014d" % i)


def bit_runs(seqs):
    """BITFIELD arguments setting the bits of `seqs`, as lease.rs's bit_runs writes them."""
    seqs = sorted(set(seqs))
    out, i = [], 0
    while i < len(seqs):
        n = 1
        while i + n < len(seqs) and n < 63 and seqs[i + n] == seqs[i] + n:
            n += 1
        out += ["SET", "u%d" % n, str(seqs[i]), str((1 << n) - 1)]
        i += n
    return out


def payloads(q, flat):
    """The payloads of the jobs of a claim reply `flat`, read as lease.rs reads them."""
    ids = flat[0::4]
    return q.r.hmget(q.keys[0], ids) if ids else []


def complete_argv(flat, payloads):
    """complete.lua's own arguments for the leases of a claim reply `flat`
    (and their `payloads`), every appid accepted with its row, as lease.rs's DoneAck writes
    them, with each accepted appid's confirmation schedule entry."""
    acks, rows, seqs = [], [], []
    now_ms = int(time.time() * 1000)
    now = now_ms // 1000
    for k in range(0, len(flat), 4):
        jid, fence, attempt = flat[k].decode(), flat[k + 1], flat[k + 2]
        payload = json.loads(payloads[k // 4])
        appid, row, ji = payload["appids"][0], payload["row"], payload["ji"]
        event = json.dumps({
            "v": 1, "id": f"{jid}.0.{appid}", "at": "2026-12-03T16:00:00.000Z",
            "type": "share.accepted", "job_id": jid, "batch_id": BATCH, "env": ENV,
            "appid": appid, "confirm_url": None, "attempts": attempt,
        }, separators=(",", ":"))
        info = json.dumps({
            "env": ENV, "appid": appid, "batch_id": BATCH, "job_id": jid,
            "accepted_at": now_ms, "checks": 0,
        }, separators=(",", ":"))
        acks += [jid, str(fence), event, f"{jid}.0.{appid}", info]
        rows += [f"{ENV}/{appid}", f"a|{row}|{now}|{attempt}|||{ji}||"]
        seqs.append(row)
    bits = bit_runs(seqs)
    # The first check's time, one group (one batch, shares, one accepted appid per job), then
    # the batch's rows block.
    return ([str(now_ms + 60_000), "1", BATCH, "a", "1", "0", str(len(seqs))] + acks
            + ["1", BATCH, str(len(rows) // 2)] + rows + ["1", "accepted", str(len(bits))] + bits)


def round_once(r, lua_dir, n, claim):
    q = Queue(r, lua_dir)
    try:
        r.config_resetstat()
        for start in range(0, n, SLICE):
            count = min(SLICE, n - start)
            argv = q.common() + ["1", "86400000", "100", "1", q.prefix + "receipt:%d" % start,
                                 "2592000000", "", BATCH, ENV, "0", "s", "1", str(count)]
            for i in range(start, start + count):
                argv += [job_id(i), "%016x" % i]
            q.call("enqueue", argv)
        enqueue = evalsha_usec(r)
        done = 0
        claim_us = complete_us = 0
        first = True
        while done < n:
            u0 = evalsha_usec(r)
            reply = q.call("claim", q.common() + ["luacost-worker", str(claim), "30000", "5",
                                                  "100", "100", "1" if first else "0"])
            u1 = evalsha_usec(r)
            claim_us += u1 - u0
            first = False
            flat = reply[1]
            if not flat:
                raise SystemExit(f"claim returned no job with {n - done} not done: {reply!r}")
            acks = complete_argv(flat, payloads(q, flat))
            jobs = len(flat) // 4
            q.call("complete", q.common() + acks)
            complete_us += evalsha_usec(r) - u1
            done += jobs
        return enqueue / n, claim_us / n, complete_us / n
    finally:
        q.clear()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lua", default=os.path.join(here, "..", "shared", "src", "store", "lua"))
    ap.add_argument("--redis", default="redis://127.0.0.1:6401")
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--claim", type=int, default=64, help="jobs per claim and per complete")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    r = redis.Redis.from_url(a.redis)
    rounds = [round_once(r, a.lua, a.jobs, a.claim) for _ in range(a.rounds)]
    best = [min(x[i] for x in rounds) for i in range(3)]
    print(json.dumps({
        "lua": os.path.abspath(a.lua), "jobs": a.jobs, "claim": a.claim, "rounds": a.rounds,
        "enqueue_us_per_job": round(best[0], 2), "claim_us_per_job": round(best[1], 2),
        "complete_us_per_job": round(best[2], 2), "total_us_per_job": round(sum(best), 2),
    }))


if __name__ == "__main__":
    main()
