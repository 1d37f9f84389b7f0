// A symlink-swap race from a second process while Node calls mkdir, rename, rm, cp,
// writeFile, truncate and utimes in a loop through the swapped name (the design of
// tests/race_harness.py): the client must never act outside, and the same harness must
// catch a naive client that checks the path with realpath and then acts on it.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";

import { connect } from "../dist/index.js";
import { chownTree, PYTHON, useDaemon } from "./daemon.mjs";

const SECONDS = Number(process.env.BENEATHD_RACE_SECONDS ?? 1.5);
const NAIVE_SECONDS = Number(process.env.BENEATHD_RACE_NAIVE_SECONDS ?? 20);
const NAMES = ["victim", "r", "x", "src"];

let d;
let c;
useDaemon(connect, (daemon, client) => { d = daemon; c = client; });

/** root/a/b (a directory) beside root/a/b_link -> ../../outside, both holding the same
 * names; outside holds the sentinel copies. */
function layout() {
  const a = join(d.root, "a");
  fs.rmSync(a, { recursive: true, force: true });
  fs.rmSync(d.outside, { recursive: true, force: true });
  fs.mkdirSync(join(a, "b"), { recursive: true });
  fs.mkdirSync(d.outside);
  for (const n of NAMES) {
    fs.writeFileSync(join(a, "b", n), "inside\n");
    fs.writeFileSync(join(d.outside, n), "OUTSIDE-SENTINEL\n");
  }
  fs.symlinkSync("../../outside", join(a, "b_link"));
  chownTree(d.root);
}

function snapshot(dir) {
  const out = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const st = fs.lstatSync(join(dir, name));
    out[name] = [st.mode, st.size, st.mtimeMs, st.nlink, st.isFile() ? fs.readFileSync(join(dir, name), "utf8") : null];
  }
  return out;
}

/** The attacker: renameat2(RENAME_EXCHANGE) of b and b_link, as fast as it can, until killed. */
function attacker() {
  const code = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": 316, "aarch64": 276}[os.uname().machine]
dfd = os.open(sys.argv[1], os.O_PATH | os.O_DIRECTORY)
sys.stdout.write("ready\\n"); sys.stdout.flush()
while True:
    libc.syscall(nr, dfd, b"b", dfd, b"b_link", 2)
`;
  const p = spawn(PYTHON, ["-c", code, join(d.root, "a")], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve) => p.stdout.once("data", () => resolve(p)));
}

async function stop(p) {
  p.kill("SIGKILL");
  await new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once("exit", r)));
  // (each race starts from a fresh layout: no need to swap back)
}

// each operation goes through a/b; `i` makes names unique
const OPS = {
  mkdir: (fs_, i) => fs_.mkdir(`a/b/m${i}`),
  rename: (fs_, i) => (i % 2 ? fs_.rename("a/b/r", "a/b/r2") : fs_.rename("a/b/r2", "a/b/r")),
  rm: (fs_, i) => (i % 2 ? fs_.rm("a/b/x", { force: true }) : fs_.writeFile("a/b/x", "again")),
  cp: (fs_, i) => fs_.cp("a/b/src", `a/b/c${i}`),
  writeFile: (fs_, i) => fs_.writeFile("a/b/victim", `written ${i}`),
  truncate: (fs_) => fs_.truncate("a/b/victim", 0),
  utimes: (fs_, i) => fs_.utimes("a/b/victim", i, i),
};

/** A client that checks, then acts: realpath of the parent must be inside the root, then
 * node:fs acts on the path (a second walk the attacker can change in between). */
function naive() {
  const P = (p) => join(d.root, p);
  const check = async (p) => {
    const real = await fsp.realpath(P(p).replace(/\/[^/]*$/, ""));
    if (!(real + "/").startsWith(d.root + "/")) throw Object.assign(new Error("escape"), { code: "EXDEV" });
  };
  const wrap = (f) => async (p, ...rest) => { await check(p); return f(P(p), ...rest); };
  return {
    mkdir: wrap(fsp.mkdir), rm: wrap(fsp.rm), writeFile: wrap(fsp.writeFile), truncate: wrap(fsp.truncate),
    utimes: wrap(fsp.utimes),
    rename: async (a, b) => { await check(a); await check(b); return fsp.rename(P(a), P(b)); },
    cp: async (a, b) => { await check(a); await check(b); return fsp.cp(P(a), P(b)); },
  };
}

/** Calls `op` through `impl` while the attacker swaps, for `seconds` (or until the outside
 * changes, with stopAtEscape); the number of calls and whether the outside changed. */
async function race(impl, op, seconds, stopAtEscape) {
  layout();
  const want = snapshot(d.outside);
  const p = await attacker();
  let calls = 0;
  let escaped = false;
  const end = Date.now() + seconds * 1000;
  try {
    while (Date.now() < end && !(stopAtEscape && escaped)) {
      for (let k = 0; k < 50; k++, calls++) await OPS[op](impl, calls).catch(() => undefined);
      escaped = JSON.stringify(snapshot(d.outside)) !== JSON.stringify(want);
    }
  } finally {
    await stop(p);
  }
  escaped ||= JSON.stringify(snapshot(d.outside)) !== JSON.stringify(want);
  return { calls, escaped };
}

describe("symlink-swap race", () => {
  for (const op of Object.keys(OPS)) {
    it(`${op}: no escape through the client, and the naive client is caught`, async () => {
      const ours = await race(c, op, SECONDS, false);
      assert.equal(ours.escaped, false, `the client acted outside (${op}, ${ours.calls} calls)`);
      assert.ok(ours.calls > 100, `too few calls to mean anything: ${ours.calls}`);
      const base = await race(naive(), op, NAIVE_SECONDS, true);
      console.log(`# ${op}: client ${ours.calls} calls, 0 escapes; naive caught after ${base.calls} calls`);
      assert.equal(base.escaped, true, `the harness did not catch the naive client (${op}, ${base.calls} calls)`);
    });
  }
});
