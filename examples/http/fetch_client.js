#!/usr/bin/env node
// fetch_client.js: HTTP calls with Node's fetch under an rlfs meter, where a
// 429 pauses every caller of the meter, not only this one.
//
// Each call holds the meter while it runs:
//
//     const fd = fs.openSync(`${mnt}/api/acquire`, "r+"); // waits for a grant
//     try {
//       const r = await fetch(url);                        // the call
//       if (r.status === 429 || r.status === 503)          // the server says: slow down
//         fs.writeSync(fd, `retry-after ${r.headers.get("retry-after")}\n`);
//     } finally {
//       fs.closeSync(fd);  // completes the call; the meter grants nothing until the pause ends
//     }
//
// "r+" opens the descriptor for reading and writing (O_RDWR), which a
// `retry-after` line needs. The line pauses the meter for exactly what the
// server said (seconds, or an HTTP-date), capped at the meter's max_pause:
// every process waiting on the meter, on this host or any host of a fleet,
// waits for the pause, and keeps its place in the queue. The client retries
// at once: its next open is the one that waits. A 429 without Retry-After
// pauses for FALLBACK_PAUSE.
//
// fs.openSync blocks the event loop until the grant: right for a script. A
// server that must keep answering while it waits uses fs.promises.open
// (libuv's thread pool, 4 threads by default, waits instead).
//
// Run it:  rlfs mount --meter 'api=concurrency=1' /mnt/rl &   then
//          API_URL=http://127.0.0.1:8080/ ./fetch_client.js
// Env:     RLFS_MNT (default /mnt/rl), METER (default api), API_URL (required),
//          REQUESTS (default 5), MAX_RETRIES (default 5: retries of one
//          request before giving up), FALLBACK_PAUSE (default 5s)
//
// Prints one line per answer, "request I: STATUS ..." and exits 0 when every
// request got a 2xx; 1 otherwise. Needs Node 18 or later (global fetch).
"use strict";
const fs = require("fs");
const path = require("path");

const env = process.env;
const mnt = env.RLFS_MNT || "/mnt/rl";
const meter = env.METER || "api";
const url = env.API_URL || "";
const requests = Number(env.REQUESTS || 5);
const maxRetries = Number(env.MAX_RETRIES || 5);
const fallback = env.FALLBACK_PAUSE || "5s";

// call makes one attempt of request i, holding the meter; it returns the
// status.
async function call(acquire, i) {
  const fd = fs.openSync(acquire, "r+"); // blocks until the meter grants
  try {
    const r = await fetch(url);
    const body = (await r.text()).trim();
    if (r.status !== 429 && r.status !== 503) {
      console.log(`request ${i}: ${r.status} ${body}`);
      return r.status;
    }
    const value = r.headers.get("retry-after") || fallback;
    try {
      fs.writeSync(fd, `retry-after ${value}\n`); // one write(2), before the close
      console.log(`request ${i}: ${r.status}, retry-after ${value}: meter paused`);
    } catch (e) { // EINVAL: a value the meter cannot read
      console.log(`request ${i}: ${r.status}, retry-after ${JSON.stringify(value)} refused (${e.code}); pausing ${fallback}`);
      fs.writeSync(fd, `retry-after ${fallback}\n`);
    }
    return r.status;
  } finally {
    fs.closeSync(fd);
  }
}

async function main() {
  if (!url) {
    console.error("fetch_client: set API_URL, such as http://127.0.0.1:8080/");
    return 1;
  }
  const acquire = path.join(mnt, meter, "acquire");
  if (!fs.existsSync(acquire)) {
    console.error(`fetch_client: no meter at ${path.dirname(acquire)}; start rlfs with --meter '${meter}=concurrency=1'`);
    return 1;
  }
  let ok = 0;
  let throttled = 0;
  for (let i = 1; i <= requests; i++) {
    let status = 0;
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      status = await call(acquire, i);
      if (status !== 429 && status !== 503) break;
      throttled++;
    }
    if (status >= 200 && status < 300) ok++;
  }
  console.log(`fetch_client: ${ok} of ${requests} requests done, ${throttled} throttled answers`);
  return ok === requests ? 0 : 1;
}

main().then((code) => { process.exitCode = code; }, (e) => {
  console.error(`fetch_client: ${e.message}${e.cause ? ` (${e.cause.message})` : ""}`);
  process.exitCode = 1;
});
