#!/usr/bin/env python3
"""Two builds of envshare-bench side by side: alternating runs, a fresh Redis each, pinned cores.

Redis's CPU time per job moves by 10-30 % from one run to the next on a shared machine, more
than most changes to the scripts. This runs one benchmark command with build A, then build B,
PAIRS times in turn, each against a fresh private redis-server (no persistence), with Redis
pinned to one core and the benchmark to another when the machine has two or more, and prints
every run and the median of each side and of the pair ratios B / A.

Usage:
    scripts/ab-pairs.py [--pairs N] [--port P] [--field F] [--no-pin] [--env-a K=V] [--env-b K=V] \
        OLD_BENCH NEW_BENCH -- ARGS...

    # the queue suite, the build before a change against the build after it
    git worktree add /tmp/envshare-old HEAD~1
    cargo build --release -p envshare-bench --manifest-path /tmp/envshare-old/Cargo.toml \\
        --target-dir /tmp/envshare-old-target
    cargo build --release -p envshare-bench
    scripts/ab-pairs.py --pairs 12 /tmp/envshare-old-target/release/envshare-bench \\
        target/release/envshare-bench -- suite 50000

    # the same build with and without confirmation tracking
    scripts/ab-pairs.py --env-a CONFIRM=0 target/release/envshare-bench \\
        target/release/envshare-bench -- share 20000 64 50 1

--field names the figure to compare in the command's closing JSON object (default
redis_cpu_us_per_job, at the top or under redis_end_to_end; a dotted path such as
redis_work.redis_cpu_us_per_job reaches inside).
Needs redis-server on PATH; taskset (util-linux) for pinning, else runs unpinned and says so
(--no-pin: unpinned on purpose).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_FIELD = "redis_cpu_us_per_job"


def pick(obj, path):
    """The figure at `path`; the default also looks under redis_end_to_end (suite, waiting)."""
    paths = [path]
    if path == DEFAULT_FIELD:
        paths.append("redis_end_to_end." + DEFAULT_FIELD)
    for candidate in paths:
        node = obj
        try:
            for part in candidate.split("."):
                node = node[part]
            return float(node)
        except (KeyError, TypeError):
            continue
    sys.exit(f"no {path!r} in the command's JSON (its keys: {', '.join(sorted(obj))}); "
             "name one with --field")


def wait_ready(port, proc):
    for _ in range(100):
        if proc.poll() is not None:
            sys.exit(f"redis-server on port {port} exited at start (is the port taken?)")
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"],
                              capture_output=True, text=True)
        if ping.stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    sys.exit(f"redis-server on port {port} did not answer PING within 5 s")


def run_once(bench, args, port, env_extra, pin):
    redis_cmd = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                 "--dir", tempfile.gettempdir()]
    bench_cmd = [bench, *args]
    if pin:
        redis_cmd = ["taskset", "-c", "0", *redis_cmd]
        bench_cmd = ["taskset", "-c", "1", *bench_cmd]
    redis = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, redis)
        env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{port}", **env_extra)
        out = subprocess.run(bench_cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"{bench} {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
        last = [line for line in out.stdout.splitlines() if line.startswith("{")][-1]
        return json.loads(last)
    finally:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"],
                       capture_output=True)
        redis.wait(timeout=10)


def env_pairs(items):
    env = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"--env-a/--env-b take KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def main():
    if "--" not in sys.argv and not {"-h", "--help"} & set(sys.argv):
        sys.exit("usage: scripts/ab-pairs.py [options] OLD_BENCH NEW_BENCH -- ARGS... "
                 "(see --help)")
    split = sys.argv.index("--") if "--" in sys.argv else len(sys.argv)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", metavar="OLD_BENCH", help="envshare-bench of build A")
    parser.add_argument("b", metavar="NEW_BENCH", help="envshare-bench of build B")
    parser.add_argument("--pairs", type=int, default=5, help="runs of each build (default 5)")
    parser.add_argument("--port", type=int, default=6410, help="the private Redis's port")
    parser.add_argument("--field", default=DEFAULT_FIELD,
                        help="the JSON figure compared (default redis_cpu_us_per_job)")
    parser.add_argument("--no-pin", action="store_true",
                        help="leave both processes to the scheduler")
    parser.add_argument("--env-a", action="append", metavar="K=V",
                        help="an environment variable for build A's runs only")
    parser.add_argument("--env-b", action="append", metavar="K=V",
                        help="an environment variable for build B's runs only")
    opts = parser.parse_args(sys.argv[1:split])
    args = sys.argv[split + 1:]
    if not args:
        sys.exit("no benchmark command after --, e.g. -- suite 50000")
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH (Debian: apt-get install redis-server)")
    pin = (not opts.no_pin and (os.cpu_count() or 1) >= 2
           and shutil.which("taskset") is not None)
    if not pin and not opts.no_pin:
        print("note: not pinned (needs two cores and taskset)", file=sys.stderr)
    sides = {"A": (opts.a, env_pairs(opts.env_a)), "B": (opts.b, env_pairs(opts.env_b))}
    figures = {"A": [], "B": []}
    for i in range(1, opts.pairs + 1):
        for side, (bench, env) in sides.items():
            result = run_once(bench, args, opts.port, env, pin)
            value = pick(result, opts.field)
            figures[side].append(value)
            print(f"pair {i} {side} {opts.field}={value:.2f}", flush=True)
    ratios = [b / a for a, b in zip(figures["A"], figures["B"]) if a > 0]
    summary = {
        "command": args, "field": opts.field, "pairs": opts.pairs, "pinned": pin,
        "a": {"bench": opts.a, "env": sides["A"][1], "runs": figures["A"],
              "median": statistics.median(figures["A"])},
        "b": {"bench": opts.b, "env": sides["B"][1], "runs": figures["B"],
              "median": statistics.median(figures["B"])},
        "median_ratio_b_over_a": statistics.median(ratios) if ratios else None,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
