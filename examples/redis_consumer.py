#!/usr/bin/env python3
"""Read envshare's events straight from Redis with redis-py (`pip install redis`).

    python3 examples/redis_consumer.py --url redis://127.0.0.1:6379 --queue share \
        --group billing --consumer billing-1 --out handled.jsonl

A consumer in a consumer group of the stream `envshare:{QUEUE}:events` (docs/events.md):

- the group is created at the start of the stream if it does not exist;
- entries another consumer of the group read and never acknowledged (it crashed) are taken
  over with XAUTOCLAIM once idle for --min-idle-ms;
- each event is handled once per event id: the id is added to a Redis set
  (`envshare-consumer:{QUEUE}:GROUP:seen`), and an event whose id was already there is only
  acknowledged. An entry is acknowledged (XACK) after it was handled, so a crash in between
  re-delivers it and the set keeps it from being handled twice.

"Handling" here appends {"id", "type", "entry"} to --out. Stops after --count distinct events,
or after --idle-exit seconds without any, or on Ctrl-C.
"""

import argparse
import json
import sys
import time

import redis


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="redis://127.0.0.1:6379")
    p.add_argument("--queue", default="share")
    p.add_argument("--group", required=True)
    p.add_argument("--consumer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=0, help="stop after this many distinct events")
    p.add_argument("--min-idle-ms", type=int, default=60000)
    p.add_argument("--idle-exit", type=float, default=0, help="stop after this long without events")
    args = p.parse_args()

    r = redis.Redis.from_url(args.url, decode_responses=True)
    stream = f"envshare:{{{args.queue}}}:events"
    seen_key = f"envshare-consumer:{{{args.queue}}}:{args.group}:seen"
    try:
        r.xgroup_create(stream, args.group, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise

    handled = 0
    last_event = time.monotonic()
    with open(args.out, "a", encoding="utf-8") as out:

        def handle(entries):
            nonlocal handled, last_event
            for entry_id, fields in entries:
                if not fields:
                    # Trimmed from the stream while pending: nothing left to handle.
                    r.xack(stream, args.group, entry_id)
                    continue
                event = json.loads(fields["event"])
                if r.sadd(seen_key, event["id"]) == 1:
                    out.write(json.dumps({"id": event["id"], "type": fields["type"],
                                          "entry": entry_id}) + "\n")
                    out.flush()
                    handled += 1
                r.xack(stream, args.group, entry_id)
                last_event = time.monotonic()

        cursor = "0-0"
        while True:
            # Stale entries of crashed consumers first, one page per round.
            cursor, claimed, *_ = r.xautoclaim(stream, args.group, args.consumer,
                                               min_idle_time=args.min_idle_ms,
                                               start_id=cursor, count=100)
            handle(claimed)
            reply = r.xreadgroup(args.group, args.consumer, {stream: ">"}, count=100, block=500)
            for _, entries in reply or []:
                handle(entries)
            if args.count and handled >= args.count:
                break
            if args.idle_exit and time.monotonic() - last_event > args.idle_exit:
                break
    print(json.dumps({"handled": handled}), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
