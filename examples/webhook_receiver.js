#!/usr/bin/env node
// A webhook receiver for envshare that verifies every delivery (Node.js standard library only).
//
//     node examples/webhook_receiver.js --port 8080 --secret "$ENVSHARE_WEBHOOK_SECRET" \
//         --out deliveries.jsonl
//
// Each POST is checked as docs/webhooks.md describes: the `Envshare-Signature` header is
// `t=UNIX_SECONDS,v1=HEX[,v1=HEX]`, and HEX is HMAC-SHA256(secret, T + "." + body) in lower-case
// hex. A delivery with a matching `v1` gets 200 and is recorded; anything else gets 400 (envshare
// then retries it). Deliveries are at least once: a receiver dedupes by `Envshare-Event-Id`.
//
// Each line of --out is one JSON object: {"id", "type", "valid", "duplicate", "body"}, where
// "body" is the request body exactly as received (decoded as UTF-8).
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');

// Reject signatures made longer ago than this (replayed deliveries).
const TOLERANCE_SECONDS = 300;

function verify(header, body, secret, nowSeconds = Date.now() / 1000) {
  let t = null;
  const signatures = [];
  for (const item of header.split(',')) {
    const i = item.indexOf('=');
    if (i < 0) continue;
    const key = item.slice(0, i).trim();
    const value = item.slice(i + 1).trim();
    if (key === 't') t = value;
    else if (key === 'v1') signatures.push(value);
  }
  if (t === null || !/^[0-9]+$/.test(t) || signatures.length === 0) return false;
  if (Math.abs(nowSeconds - Number(t)) > TOLERANCE_SECONDS) return false;
  // Sign the raw bytes: never a re-serialized JSON.parse(body).
  const expected = crypto
    .createHmac('sha256', secret)
    .update(Buffer.concat([Buffer.from(t + '.'), body]))
    .digest();
  return signatures.some((s) => {
    const given = Buffer.from(s, 'hex');
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
}

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback === undefined) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
  return fallback;
}

const port = Number(arg('port', '8080'));
const secret = arg('secret');
const out = fs.openSync(arg('out'), 'a');
const seen = new Set();

const server = http.createServer((req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(405).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const id = req.headers['envshare-event-id'] || '';
    const valid = verify(req.headers['envshare-signature'] || '', body, secret);
    const duplicate = valid && seen.has(id);
    if (valid) seen.add(id);
    const record = {
      id,
      type: req.headers['envshare-event-type'] || '',
      valid,
      duplicate,
      body: body.toString('utf8'),
    };
    fs.writeSync(out, JSON.stringify(record) + '\n');
    // A duplicate is acknowledged too: it was handled the first time.
    res.writeHead(valid ? 200 : 400, { 'Content-Length': '0' }).end();
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
