#!/usr/bin/env python3
"""A webhook receiver for envshare that verifies every delivery (Python standard library only).

    python3 examples/webhook_receiver.py --port 8080 --secret "$ENVSHARE_WEBHOOK_SECRET" \
        --out deliveries.jsonl

Each POST is checked as docs/webhooks.md describes: the `Envshare-Signature` header is
`t=UNIX_SECONDS,v1=HEX[,v1=HEX]`, and HEX is HMAC-SHA256(secret, T + "." + body) in lower-case
hex. A delivery with a matching `v1` gets 200 and is recorded; anything else gets 400 (envshare
then retries it). Deliveries are at least once: a receiver dedupes by `Envshare-Event-Id`.

Each line of --out is one JSON object: {"id", "type", "valid", "duplicate", "body"}, where "body"
is the request body exactly as received (decoded as UTF-8).
"""

import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Reject signatures made longer ago than this (replayed deliveries). Retries are signed afresh,
# so a generous window costs nothing.
TOLERANCE_SECONDS = 300


def verify(header, body, secret, now=None):
    """Whether `header` signs `body` (bytes) with `secret` (bytes) within the tolerance."""
    t = None
    signatures = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            t = value
        elif key == "v1":
            signatures.append(value)
    if t is None or not t.isdigit() or not signatures:
        return False
    now = time.time() if now is None else now
    if abs(now - int(t)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", required=True, help="append one JSON line per delivery")
    args = parser.parse_args()
    secret = args.secret.encode()
    seen = set()
    lock = threading.Lock()
    out = open(args.out, "a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            event_id = self.headers.get("Envshare-Event-Id", "")
            valid = verify(self.headers.get("Envshare-Signature", ""), body, secret)
            with lock:
                duplicate = valid and event_id in seen
                if valid:
                    seen.add(event_id)
                record = {
                    "id": event_id,
                    "type": self.headers.get("Envshare-Event-Type", ""),
                    "valid": valid,
                    "duplicate": duplicate,
                    "body": body.decode("utf-8", "replace"),
                }
                out.write(json.dumps(record) + "\n")
                out.flush()
            # A duplicate is acknowledged too: it was handled the first time.
            self.send_response(200 if valid else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
