// The Node side of bench/bench_node.py: the Node client against node:fs, in one process.
//
//     node --expose-gc bench/node_bench.mjs SOCKET ROOT JSON-ARGS
//
// JSON-ARGS (written by bench_node.py): file names in ROOT (small, mid, midW, big), an
// absolute path next to ROOT for the plain writeFile (plainW), and the counts: statN
// calls per stat sample, rounds, midN calls per 1 MiB sample, midRounds, bigRounds,
// tpSeconds per throughput window, tpRounds, inflight, warmup (untimed rounds).
//
// Every comparison interleaves its contenders within each round (A B C, then C B A rotated,
// ...), so machine noise lands on all of them alike. The Python Client.stat contender is a
// turn of the Python process: this one prints `{"py": "stat", "round": r}` on stdout and
// waits for `go P50NS` on stdin while Python runs its round (the only stdout traffic besides
// the final `{"results": ...}` line).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { connect } from "../node/dist/index.js";

const [socketPath, root, argsJson] = process.argv.slice(2);
const A = JSON.parse(argsJson);
const hr = process.hrtime.bigint;
const gc = globalThis.gc ?? (() => {});

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function p50(xs) {
  const s = Float64Array.from(xs).sort();
  return s[s.length >> 1];
}

function check(ok, what) {
  if (!ok) throw new Error(`node_bench: ${what}`);
}

/** Each case's samples over `rounds` rounds after `warmup` untimed ones; the order is
 * rotated each round and reversed every other round. `run()` returns the sample. */
async function interleave(cases, rounds, warmup = A.warmup) {
  const out = Object.fromEntries(cases.map((c) => [c.name, []]));
  const k = cases.length;
  for (let rnd = -warmup; rnd < rounds; rnd++) {
    const order = cases.map((_, i) => cases[(((i + rnd) % k) + k) % k]);
    if (rnd & 1) order.reverse();
    for (const c of order) {
      await c.setup?.();
      gc();
      const v = await c.run(rnd);
      await c.teardown?.();
      if (rnd >= 0) out[c.name].push(v);
    }
  }
  return out;
}

/** p50 (ns) of `n` sequential calls of `fn`. */
async function latency(fn, n) {
  const ts = new Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = hr();
    await fn();
    ts[i] = Number(hr() - t0);
  }
  return p50(ts);
}

/** Mean ns per call of `n` sequential calls. */
async function perCall(fn, n) {
  const t0 = hr();
  for (let i = 0; i < n; i++) await fn();
  return Number(hr() - t0) / n;
}

/** Calls per second with `inflight` calls outstanding for `seconds`. */
async function throughput(fn, inflight, seconds) {
  let done = 0;
  const t0 = hr();
  const end = t0 + BigInt(Math.round(seconds * 1e9));
  const lane = async () => {
    while (hr() < end) {
      await fn();
      done++;
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  return done / (Number(hr() - t0) / 1e9);
}

const sync = () => { execFileSync("sync"); }; // dirty pages written back between write samples (untimed)

const c = await connect(socketPath);
const abs = (name) => join(root, name);
const results = { node: process.version, v8: process.versions.v8 };

// -- stat round trip ------------------------------------------------------------------------
{
  const path = abs(A.small);
  const py = {
    name: "Python Client.stat",
    run: async (rnd) => {
      process.stdout.write(JSON.stringify({ py: "stat", round: rnd }) + "\n");
      const r = await lines.next();
      check(!r.done && r.value.startsWith("go "), `expected "go P50" from Python, got ${JSON.stringify(r.value)}`);
      return Number(r.value.slice(3));
    },
  };
  for (let i = 0; i < 200; i++) { await c.stat(A.small); await fs.promises.stat(path); }
  results.stat = await interleave([
    { name: "Node Client.stat", run: () => latency(() => c.stat(A.small), A.statN) },
    { name: "fs.promises.stat", run: () => latency(() => fs.promises.stat(path), A.statN) },
    ...(A.pyStat ? [py] : []),
  ], A.rounds);
  const st = await c.stat(A.small);
  check(st.size === fs.statSync(path).size, "Client.stat and fs.stat disagree on the size");
}

// -- readFile / writeFile of 1 MiB ----------------------------------------------------------
{
  const mid = abs(A.mid);
  const size = fs.statSync(mid).size;
  const data = fs.readFileSync(mid);
  const rd = async (p) => { const b = await p; check(b.length === size, "short read"); };
  results.readFile = await interleave([
    { name: "Node Client.readFile", run: () => perCall(() => rd(c.readFile(A.mid)), A.midN) },
    { name: "fs.promises.readFile", run: () => perCall(() => rd(fs.promises.readFile(mid)), A.midN) },
  ], A.midRounds);
  results.writeFile = await interleave([
    { name: "Node Client.writeFile", setup: sync, teardown: sync,
      run: () => perCall(() => c.writeFile(A.midW, data), A.midN) },
    { name: "fs.promises.writeFile", setup: sync, teardown: sync,
      run: () => perCall(() => fs.promises.writeFile(A.plainW, data), A.midN) },
  ], A.midRounds);
  check(fs.statSync(abs(A.midW)).size === size && fs.statSync(A.plainW).size === size, "writeFile sizes");
}

// -- createReadStream of the big file -------------------------------------------------------
{
  const big = abs(A.big);
  const size = fs.statSync(big).size;
  const consume = async (stream) => {
    const t0 = hr();
    let n = 0;
    for await (const chunk of stream) n += chunk.length;
    const t = Number(hr() - t0);
    check(n === size, `stream gave ${n} of ${size} bytes`);
    return t;
  };
  results.stream = await interleave([
    { name: "Node Client.createReadStream", run: () => consume(c.createReadStream(A.big)) },
    { name: "fs.createReadStream", run: () => consume(fs.createReadStream(big)) },
  ], A.bigRounds);
}

// -- throughput, calls in flight ------------------------------------------------------------
{
  const path = abs(A.small);
  results.tp = await interleave([
    { name: "Node Client.stat", run: () => throughput(() => c.stat(A.small), A.inflight, A.tpSeconds) },
    { name: "fs.promises.stat", run: () => throughput(() => fs.promises.stat(path), A.inflight, A.tpSeconds) },
  ], A.tpRounds, 1);
}

await c.close();
process.stdout.write(JSON.stringify({ results }) + "\n");
process.exit(0);
