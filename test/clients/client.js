// client.js: an rlfs end-to-end client in JavaScript (node, fs.openSync).
//
//   node client.js ACQUIRE ID CALLS HOLD LOG
//
// makes CALLS calls one after the other, each holding HOLD seconds, and
// appends "ID GRANT_NS RELEASE_NS CALL CLOSED_NS - ASKED_NS" per call to LOG.
// Times come from Date.now() (millisecond precision), taken right after
// openSync returns, right before closeSync, right after it and right before
// openSync.
'use strict';
const fs = require('fs');

const [acq, id, calls, hold, log] = process.argv.slice(2);
const nowNs = () => BigInt(Date.now()) * 1000000n;
const sleep = (s) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, s * 1000);

for (let i = 0; i < Number(calls); i++) {
  const a = nowNs();
  const fd = fs.openSync(acq, 'r');
  const g = nowNs();
  const buf = Buffer.alloc(512);
  const n = fs.readSync(fd, buf, 0, buf.length, null);
  const m = / call (\d+)/.exec(buf.toString('utf8', 0, n));
  if (Number(hold) > 0) sleep(Number(hold));
  const r = nowNs();
  fs.closeSync(fd);
  const c = nowNs() + 1000000n; // Date.now() truncates: round up
  fs.appendFileSync(log, `${id} ${g} ${r} ${m ? m[1] : '-'} ${c} - ${a}\n`);
}
