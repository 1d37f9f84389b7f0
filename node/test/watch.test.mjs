// Client.watch against a real daemon: events as Node's fs.promises.watch shapes them plus
// the daemon's own fields, setup errors, the end of a watch, pacing, and every way of
// leaving one (close, break, signal) cancelling it in the daemon. Changes are made only
// after `ready`, and events are collected until the expected ones came (10 s at most):
// no assertion depends on a sleep.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { join } from "node:path";

import { connect, EscapeError, Watcher } from "../dist/index.js";
import { chownTree, startDaemon, useDaemon } from "./daemon.mjs";

let d;
let c;
useDaemon(connect, (daemon, client) => { d = daemon; c = tracked(client); });

/** Watches a test left open (it failed half-way) are closed after it, so that the next
 * test does not meet the daemon's limit of 32 per connection. */
const opened = new Set();
function tracked(client) {
  const watch = client.watch.bind(client);
  client.watch = (...args) => {
    const w = watch(...args);
    opened.add(w);
    return w;
  };
  return client;
}
afterEach(() => {
  for (const w of opened) w.close();
  opened.clear();
});

const WAIT = 10_000;

/** Events of `w` until `done(events)` says the expected ones came; fails after `ms` with
 * what came by then. */
async function collect(w, done, ms = WAIT) {
  const events = [];
  const deadline = Date.now() + ms;
  while (!done(events)) {
    const left = deadline - Date.now();
    let timer;
    const r = await Promise.race([w.next(), new Promise((resolve) => { timer = setTimeout(resolve, Math.max(left, 0), "late"); })]);
    clearTimeout(timer);
    if (r === "late") assert.fail(`the expected events did not come within ${ms} ms; got ${show(events)}`);
    if (r.done) assert.fail(`the watch ended before the expected events came; got ${show(events)}`);
    events.push(r.value);
  }
  return events;
}

function show(events) {
  return JSON.stringify(events.map((e) => [e.kind, String(e.path), e.isDir, e.cookie]));
}

const has = (kind, filename, isDir) => (events) =>
  events.some((e) => e.kind === kind && e.filename === filename && (isDir === undefined || e.isDir === isDir));
const all = (...preds) => (events) => preds.every((p) => p(events));

/** A directory in the root, owned by the daemon's user. */
function dir(rel) {
  fs.mkdirSync(join(d.root, rel), { recursive: true });
  chownTree(join(d.root, rel));
  return join(d.root, rel);
}

/** `w.ready` or the retries of a watch the daemon's limits refuse (ENOSPC: directories,
 * EMFILE: watches) until a watch cancelled just before has been released there (the
 * daemon takes the cancel asynchronously). */
async function watchWhenRoom(client, path, options) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const w = client.watch(path, options);
    try {
      await w.ready;
      return w;
    } catch (e) {
      if ((e.code !== "ENOSPC" && e.code !== "EMFILE") || Date.now() > deadline) throw e;
    }
    await new Promise((r) => setImmediate(r));
  }
}

describe("events", () => {
  it("a file created, modified and deleted: Node's eventType/filename, the daemon's kind/path", async () => {
    const top = dir("w1");
    const w = c.watch("w1");
    assert.ok(w instanceof Watcher);
    await w.ready;
    fs.writeFileSync(join(top, "f"), "");
    const created = await collect(w, has("created", "f"));
    fs.appendFileSync(join(top, "f"), "more");
    const modified = await collect(w, has("modified", "f"));
    fs.unlinkSync(join(top, "f"));
    const deleted = await collect(w, has("deleted", "f"));
    const pick = (evs, kind) => evs.find((e) => e.kind === kind && e.filename === "f");
    assert.deepEqual(pick(created, "created"),
                     { eventType: "rename", filename: "f", kind: "created", path: "w1/f", isDir: false, cookie: 0 });
    assert.deepEqual(pick(modified, "modified"),
                     { eventType: "change", filename: "f", kind: "modified", path: "w1/f", isDir: false, cookie: 0 });
    assert.deepEqual(pick(deleted, "deleted"),
                     { eventType: "rename", filename: "f", kind: "deleted", path: "w1/f", isDir: false, cookie: 0 });
    fs.chmodSync(join(top), 0o750); // the watched directory itself: named by its last component
    const self = await collect(w, has("attrib", "w1", true));
    assert.equal(self.at(-1).eventType, "change");
    assert.equal(self.at(-1).path, "w1");
    // a write through the daemon (atomic: a new file published at the name) is seen too
    await c.writeFile("w1/g", "g");
    await collect(w, (evs) => evs.some((e) => (e.kind === "created" || e.kind === "moved_to") && e.filename === "g"));
    w.close();
    assert.equal(w.closed, true);
    assert.deepEqual(await w.next(), { done: true, value: undefined });
  });

  it("mkdir -p five deep with a file: every new directory and the file are reported", async () => {
    dir("w2");
    const w = c.watch("w2", { recursive: true });
    await w.ready;
    fs.mkdirSync(join(d.root, "w2/a/b/c/d/e"), { recursive: true });
    fs.writeFileSync(join(d.root, "w2/a/b/c/d/e/f"), "f");
    const want = ["a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e"];
    const events = await collect(w, all(...want.map((n) => has("created", n, true)), has("created", "a/b/c/d/e/f", false)));
    for (const e of events) {
      assert.equal(e.path, `w2/${e.filename}`);
      assert.equal(e.eventType, "rename");
    }
    // the new directories are watched: a change deep inside is seen
    fs.writeFileSync(join(d.root, "w2/a/b/c/d/e/g"), "g");
    await collect(w, has("created", "a/b/c/d/e/g", false));
    w.close();
  });

  it("a rename within the tree is a moved_from/moved_to pair with one cookie; a moved directory is followed", async () => {
    const top = dir("w3/x");
    dir("w3/y");
    fs.writeFileSync(join(top, "old"), "o");
    const w = c.watch("w3", { recursive: true });
    await w.ready;
    fs.renameSync(join(d.root, "w3/x/old"), join(d.root, "w3/y/new"));
    const events = await collect(w, all(has("moved_from", "x/old", false), has("moved_to", "y/new", false)));
    const from = events.find((e) => e.kind === "moved_from");
    const to = events.find((e) => e.kind === "moved_to");
    assert.ok(from.cookie !== 0);
    assert.equal(to.cookie, from.cookie);
    assert.equal(from.eventType, "rename");
    assert.equal(from.path, "w3/x/old");
    assert.equal(to.path, "w3/y/new");
    fs.renameSync(join(d.root, "w3/x"), join(d.root, "w3/z"));
    await collect(w, all(has("moved_from", "x", true), has("moved_to", "z", true)));
    fs.writeFileSync(join(d.root, "w3/z/inside"), "i"); // under its new name
    await collect(w, has("created", "z/inside", false));
    w.close();
  });

  it("a file watched alone: its own events, named by its basename", async () => {
    dir("w6");
    fs.writeFileSync(join(d.root, "w6/f"), "f");
    fs.writeFileSync(join(d.root, "w6/other"), "o");
    const w = c.watch("w6/f");
    await w.ready;
    fs.appendFileSync(join(d.root, "w6/other"), "x"); // not this file: not reported
    fs.appendFileSync(join(d.root, "w6/f"), "x");
    const events = await collect(w, has("modified", "f", false));
    assert.ok(events.every((e) => e.path === "w6/f" && e.filename === "f"), show(events));
    w.close();
  });

  it("Buffers for a Buffer path or encoding 'buffer'; the root watched as '.'", async () => {
    dir("w7");
    const w = c.watch(Buffer.from("w7"));
    const v = c.watch("w7", { encoding: "buffer" });
    const r = c.watch(".", { recursive: false });
    await Promise.all([w.ready, v.ready, r.ready]);
    fs.writeFileSync(join(d.root, "w7/b"), "b");
    fs.writeFileSync(join(d.root, "top-level"), "t");
    for (const x of [w, v]) {
      const events = await collect(x, (evs) => evs.some((e) => e.kind === "created" && Buffer.isBuffer(e.filename)
        && e.filename.equals(Buffer.from("b"))));
      assert.ok(events.every((e) => Buffer.isBuffer(e.filename) && Buffer.isBuffer(e.path)));
      assert.deepEqual(events.at(-1).path, Buffer.from("w7/b"));
      x.close();
    }
    const top = await collect(r, has("created", "top-level", false));
    assert.equal(top.at(-1).path, "top-level");
    assert.ok(!top.some((e) => String(e.path).startsWith("w7/")), "not recursive: nothing from below"); // w7/b
    r.close();
  });

  it("the watched directory deleted: its last event, then the iteration ends", async () => {
    dir("w5/sub");
    const w = c.watch("w5");
    await w.ready;
    fs.rmSync(join(d.root, "w5"), { recursive: true });
    const events = await collect(w, has("deleted", "w5", true));
    assert.equal(events.at(-1).path, "w5");
    assert.deepEqual(await w.next(), { done: true, value: undefined });
    assert.equal(w.closed, true);
  });

  it("pacing: while nobody reads, a few pages come ahead and the rest overflows into one event; it goes on", async () => {
    const top = dir("w8");
    const w = c.watch("w8", { maxQueue: 10 });
    await w.ready;
    // more events than the 4 pages of 512 the daemon may send ahead: the rest waits in the
    // daemon's queue of 10, which overflows
    for (let i = 0; i < 3000; i++) fs.writeFileSync(join(top, `f${i}`), "");
    const events = await collect(w, (evs) => evs.some((e) => e.kind === "overflow"));
    const o = events.at(-1);
    assert.deepEqual(o, { eventType: "rename", filename: "w8", kind: "overflow", path: "w8", isDir: false, cookie: 0 });
    // what came is what the pages sent ahead held, not all 3000: the rest was dropped
    assert.ok(events.length < 3000, `${events.length} events before the overflow`);
    // and the watch goes on: a change made now is seen, unless the rest of the 3000 still
    // coming overflows the queue again first (that overflow says so: then once more)
    for (let k = 0; ; k++) {
      assert.ok(k < 100, "every change after the overflow was swallowed by another one");
      fs.writeFileSync(join(top, `after${k}`), "");
      const more = await collect(w, (evs) => evs.some((e) => e.kind === "overflow" || e.filename === `after${k}`));
      if (more.at(-1).kind !== "overflow") break;
    }
    w.close();
  });
});

describe("setup errors", () => {
  it("a missing path rejects ready and the first next() as node:fs's watch does", async () => {
    const w = c.watch("nope");
    const e = await w.ready.catch((x) => x);
    let node;
    try {
      for await (const _ of fsp.watch(join(d.plain, "nope"))) void _;
    } catch (x) {
      node = x;
    }
    assert.equal(e.code, "ENOENT");
    assert.equal(e.errno, node.errno);
    assert.equal(e.syscall, "watch");
    assert.equal(e.path, "nope");
    assert.equal(e.message, node.message.replace(join(d.plain, "nope"), "nope"));
    await assert.rejects(w.next(), { code: "ENOENT" });
    assert.deepEqual(await w.next(), { done: true, value: undefined });
    // for await gives the same error
    await assert.rejects(async () => { for await (const _ of c.watch("nope")) void _; }, { code: "ENOENT" });
  });

  it("a symlink leading out (and ..) is an EscapeError, EXDEV, with nothing watched outside", async () => {
    dir("we");
    fs.symlinkSync(d.outside, join(d.root, "we/out"));
    for (const p of ["we/out", "we/out/", "../outside", "/etc"]) {
      const w = c.watch(p);
      const e = await w.ready.catch((x) => x);
      assert.ok(e instanceof EscapeError, `${p}: ${e}`);
      assert.equal(e.code, "EXDEV");
      assert.equal(e.errno, -18);
      assert.equal(e.syscall, "watch");
      assert.equal(e.path, p);
      assert.ok(!e.message.includes(d.root));
      await assert.rejects(w.next(), { name: "EscapeError", code: "EXDEV" });
    }
  });

  it("bad options are Node's argument errors, thrown before anything is sent", () => {
    assert.throws(() => c.watch("w", { recursive: "yes" }), { code: "ERR_INVALID_ARG_TYPE" });
    assert.throws(() => c.watch("w", { maxQueue: 0 }), { code: "ERR_INVALID_ARG_VALUE" });
    assert.throws(() => c.watch("w", { signal: {} }), { code: "ERR_INVALID_ARG_TYPE" });
    assert.throws(() => c.watch(42), { code: "ERR_INVALID_ARG_TYPE" });
  });

  it("maxQueue above the daemon's limit is EINVAL from the daemon", async () => {
    await assert.rejects(c.watch(".", { maxQueue: 1 << 20 }).ready, { code: "EINVAL" });
  });
});

describe("leaving a watch", () => {
  it("the client's timeout bounds the setup only: a watch runs on past it", async () => {
    dir("wt");
    const tc = tracked(await connect(d.socket, { timeout: 100 }));
    try {
      const w = tc.watch("wt");
      await w.ready;
      await new Promise((r) => setTimeout(r, 300)); // three timeouts later
      fs.writeFileSync(join(d.root, "wt/late"), "");
      await collect(w, has("created", "late"));
      w.close();
    } finally {
      await tc.close();
    }
  });

  it("an AbortSignal rejects the waiting next() with an AbortError, then done; the daemon serves on", async () => {
    const top = dir("wa");
    const ac = new AbortController();
    const w = c.watch("wa", { signal: ac.signal });
    await w.ready;
    fs.writeFileSync(join(top, "one"), "");
    await collect(w, has("created", "one"));
    const waiting = w.next();
    ac.abort();
    await assert.rejects(waiting, { name: "AbortError", code: "ABORT_ERR" });
    assert.deepEqual(await w.next(), { done: true, value: undefined });
    assert.equal((await c.stat("wa")).isDirectory(), true);
    assert.deepEqual(await c.readdir("wa"), ["one"]);
    // aborted before: nothing is sent, ready and next() reject
    const pre = c.watch("wa", { signal: AbortSignal.abort() });
    await assert.rejects(pre.ready, { name: "AbortError" });
    await assert.rejects(pre.next(), { name: "AbortError" });
    // aborted during the setup
    const ac2 = new AbortController();
    const mid = c.watch("wa", { signal: ac2.signal });
    ac2.abort();
    await assert.rejects(mid.ready, { name: "AbortError" });
  });

  it("32 watches on one connection, the daemon's limit (EMFILE beyond); calls in between go on", async () => {
    dir("wm");
    const ws = [];
    for (let i = 0; i < 32; i++) ws.push(await watchWhenRoom(c, "wm")); // (the last test's may still be going)
    const over = c.watch("wm");
    await assert.rejects(over.ready, (e) => e.code === "EMFILE" && e.syscall === "watch" && /limit is 32/.test(e.message));
    await assert.rejects(over.next(), { code: "EMFILE" });
    fs.writeFileSync(join(d.root, "wm/f"), "");
    await Promise.all(ws.map((w) => collect(w, has("created", "f"))));
    assert.deepEqual(await c.readdir("wm"), ["f"]);
    ws.pop().close(); // room for one again, once the daemon has taken the cancel
    (await watchWhenRoom(c, "wm")).close();
    for (const w of ws) w.close();
    const again = [];
    for (let i = 0; i < 32; i++) again.push(await watchWhenRoom(c, "wm"));
    for (const w of again) w.close();
  });
});

describe("the daemon's watch limit (2 directories per connection)", () => {
  let ld;
  let lc;
  before(async () => {
    ld = await startDaemon("--max-watches-per-connection", "2");
    lc = tracked(await connect(ld.socket));
  });
  after(async () => {
    await lc?.close();
    await ld?.stop();
  });
  const mk = (rel) => {
    fs.mkdirSync(join(ld.root, rel), { recursive: true });
    chownTree(join(ld.root, rel));
  };

  it("over the limit at setup: ENOSPC naming the limit; the tree growing past it ends the watch with ENOSPC", async () => {
    mk("big/a/b");
    await assert.rejects(lc.watch("big", { recursive: true }).ready, (e) => e.code === "ENOSPC" && /watch limit/.test(e.message)
      && e.syscall === "watch");
    mk("g");
    const w = lc.watch("g", { recursive: true });
    await w.ready; // 1 directory
    fs.mkdirSync(join(ld.root, "g/one")); // 2
    fs.mkdirSync(join(ld.root, "g/two")); // 3: over
    const seen = [];
    const e = await (async () => {
      for await (const ev of w) seen.push(ev);
    })().then(() => null, (x) => x);
    assert.ok(e !== null && e.code === "ENOSPC", `ended with ${e} after ${show(seen)}`);
    assert.ok(seen.some((ev) => ev.kind === "created" && ev.filename === "one"), show(seen));
    assert.deepEqual(await w.next(), { done: true, value: undefined });
  });

  it("close(), break and the signal each release the watch in the daemon", async () => {
    mk("p/q");
    mk("r");
    // p and p/q take the connection's 2: another watch has no room until that one is gone
    const ways = {
      close: async (w) => { w.close(); },
      break: async (w) => {
        fs.writeFileSync(join(ld.root, "p/trigger"), "");
        for await (const ev of w) { void ev; break; }
        fs.rmSync(join(ld.root, "p/trigger"));
      },
    };
    for (const [how, leave] of Object.entries(ways)) {
      const w = await watchWhenRoom(lc, "p", { recursive: true }); // (the last one's release may still be on its way)
      await assert.rejects(lc.watch("r").ready, { code: "ENOSPC" }, how);
      await leave(w);
      assert.equal(w.closed, true, how);
      (await watchWhenRoom(lc, "r")).close();
      await watchWhenRoom(lc, "p", { recursive: true }).then((x) => x.close()); // and the room of r is back too
    }
    const ac = new AbortController();
    const w = await watchWhenRoom(lc, "p", { recursive: true, signal: ac.signal });
    ac.abort();
    await assert.rejects(w.next(), { name: "AbortError" });
    (await watchWhenRoom(lc, "r")).close();
    assert.equal((await lc.stat("p/q")).isDirectory(), true);
  });
});
