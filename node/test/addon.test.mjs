// Tests of the native transport (build/Release/seqpacket.node) on its own,
// without the client.  Run: node --test test/addon.test.mjs
//
// No assertion depends on timing: events are awaited, and timeouts only turn a
// hang into a failure.  "Nothing more happens" is checked across several loop
// turns, which is enough because a ready fd fires on every turn.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const addonPath = fileURLToPath(new URL("../build/Release/seqpacket.node", import.meta.url));
const sp = require(addonPath);
const { MSG_TRUNC, EAGAIN } = sp;

const GUARD_MS = 20000;

function pair(t) {
  const fds = sp.socketpair();
  const open = new Set(fds);
  t.after(() => {
    for (const fd of open) sp.close(fd);
  });
  // closeOne lets a test close an end itself without the cleanup closing it twice.
  return { a: fds[0], b: fds[1], closeOne: (fd) => (open.delete(fd), sp.close(fd)) };
}

function withGuard(promise, what) {
  let timer;
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), GUARD_MS);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

// A Poller whose events can be awaited.
function watch(t, fd) {
  const events = [];
  let waiter = null;
  const poller = new sp.Poller(fd, (err, readable, writable) => {
    events.push({ err, readable, writable });
    if (waiter && waiter.pred({ err, readable, writable })) {
      const w = waiter;
      waiter = null;
      w.resolve({ err, readable, writable });
    }
  });
  t.after(() => poller.close());
  const next = (pred, what) =>
    withGuard(new Promise((resolve) => (waiter = { pred, resolve })), what);
  return { poller, events, next };
}

async function turns(n = 5) {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 20));
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

function fdFlags(fd) {
  const m = /^flags:\s*([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
  assert.ok(m, "fdinfo has a flags line");
  return parseInt(m[1], 8);
}
const O_CLOEXEC = 0o2000000;

// Runs `node -e script`; resolves with { code, signal, stdout, stderr }.
function runNode(args, { input, onStdout } = {}) {
  return withGuard(
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => {
        stdout += d;
        onStdout?.(stdout, child);
      });
      child.stderr.on("data", (d) => (stderr += d));
      child.on("error", reject);
      child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
      if (input === undefined) child.stdin.end();
    }),
    `node ${args.join(" ").slice(0, 60)}`,
  );
}

const childPrelude = `const sp = require(${JSON.stringify(addonPath)});`;

test("socketpair datagrams keep their boundaries; empty socket gives null", (t) => {
  const { a, b } = pair(t);
  assert.equal(sp.recv(b, 100), null);
  for (const s of ["a", "bb", "ccc"]) assert.equal(sp.send(a, Buffer.from(s)), s.length);
  assert.equal(sp.send(a, new Uint8Array(0)), 0);
  for (const s of ["a", "bb", "ccc", ""]) {
    const r = sp.recv(b, 100);
    assert.ok(Buffer.isBuffer(r.data));
    assert.equal(r.data.toString(), s);
    assert.deepEqual(r.fds, []);
    assert.equal(r.flags, 0);
  }
  assert.equal(sp.recv(b, 100), null);
  // Both directions work.
  assert.equal(sp.send(b, Buffer.from("back")), 4);
  assert.equal(sp.recv(a, 100).data.toString(), "back");
});

test("a 200 KiB datagram round-trips", (t) => {
  const { a, b } = pair(t);
  const big = Buffer.alloc(200 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 10)) & 0xff;
  assert.equal(sp.send(a, big), big.length);
  const r = sp.recv(b, 16 * 1024 * 1024);
  assert.equal(r.data.length, big.length);
  assert.ok(r.data.equals(big));
  assert.equal(r.flags & MSG_TRUNC, 0);
});

test("subarray views send only their bytes", (t) => {
  const { a, b } = pair(t);
  const whole = Buffer.from("0123456789");
  assert.equal(sp.send(a, whole.subarray(3, 6)), 3);
  assert.equal(sp.recv(b, 100).data.toString(), "345");
});

test("recv smaller than the datagram sets MSG_TRUNC and drops the rest", (t) => {
  const { a, b } = pair(t);
  sp.send(a, Buffer.from("0123456789"));
  sp.send(a, Buffer.from("next"));
  const r = sp.recv(b, 4);
  assert.equal(r.data.toString(), "0123");
  assert.ok(r.flags & MSG_TRUNC);
  const r2 = sp.recv(b, 100);
  assert.equal(r2.data.toString(), "next");
  assert.equal(r2.flags & MSG_TRUNC, 0);
});

test("fds sent arrive as new close-on-exec fds for the same file", (t) => {
  const { a, b } = pair(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "seqpacket-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "f.txt");
  fs.writeFileSync(file, "file contents");
  const fd = fs.openSync(file, "r");
  t.after(() => fs.closeSync(fd));

  assert.equal(sp.send(a, Buffer.from("\x00with fd"), [fd]), 8);
  const r = sp.recv(b, 100);
  assert.equal(r.data.toString(), "\x00with fd");
  assert.equal(r.fds.length, 1);
  const got = r.fds[0];
  assert.notEqual(got, fd);
  assert.ok(fdFlags(got) & O_CLOEXEC, "received fd is O_CLOEXEC");
  const buf = Buffer.alloc(64);
  const n = fs.readSync(got, buf, 0, buf.length, 0);
  assert.equal(buf.toString("utf8", 0, n), "file contents");
  sp.close(got);

  // The most the API sends at once, 16, all arrive, with no MSG_CTRUNC.
  const many = Array(16).fill(fd);
  sp.send(a, Buffer.from("x"), many);
  const r2 = sp.recv(b, 100);
  assert.equal(r2.fds.length, 16);
  assert.equal(new Set(r2.fds).size, 16);
  assert.equal(r2.flags, 0);
  for (const f of r2.fds) sp.close(f);
});

test("close() twice throws EBADF", (t) => {
  const [a, b] = sp.socketpair();
  sp.close(b);
  sp.close(a);
  assert.throws(() => sp.close(a), (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.code, "EBADF");
    assert.equal(e.errno, -9);
    assert.equal(e.syscall, "close");
    assert.equal(e.message, "close EBADF");
    assert.equal("address" in e, false);
    return true;
  });
});

test("EOF after the peer closes: empty data, no fds", (t) => {
  const { a, b, closeOne } = pair(t);
  sp.send(a, Buffer.from("last"));
  closeOne(a);
  assert.equal(sp.recv(b, 100).data.toString(), "last");
  const eof = sp.recv(b, 100);
  assert.equal(eof.data.length, 0);
  assert.deepEqual(eof.fds, []);
  // EOF persists; it is not a one-shot event.
  assert.equal(sp.recv(b, 100).data.length, 0);
  // Sending to a closed peer is EPIPE, and no SIGPIPE kills us.
  assert.throws(() => sp.send(b, Buffer.from("x")), (e) => {
    assert.equal(e.code, "EPIPE");
    assert.equal(e.errno, -32);
    assert.equal(e.syscall, "sendmsg");
    assert.equal("address" in e, false);
    return true;
  });
});

test("send returns -EAGAIN when the peer's queue is full; writable fires once drained", async (t) => {
  const { a, b } = pair(t);
  const chunk = Buffer.alloc(4096);
  let sent = 0;
  let r;
  while ((r = sp.send(a, chunk)) === chunk.length) {
    sent++;
    assert.ok(sent < 100000, "socket never filled up");
  }
  assert.equal(r, -EAGAIN);
  assert.equal(r, -11);
  const w = watch(t, a);
  w.poller.start(false, true);
  // Nothing is writable until the reader drains.
  await turns();
  assert.equal(w.events.length, 0);
  const writable = w.next((e) => e.writable, "writable");
  let drained = 0;
  while (sp.recv(b, 8192) !== null) drained++;
  assert.equal(drained, sent);
  const ev = await writable;
  assert.equal(ev.err, null);
  assert.equal(sp.send(a, chunk), chunk.length);
});

test("Poller: readable on arrival, writable on request, stop and close silence it", async (t) => {
  const { a, b } = pair(t);
  const w = watch(t, b);
  w.poller.start(true, false);
  await turns();
  assert.equal(w.events.length, 0, "no event while nothing is queued");

  const readable = w.next((e) => e.readable, "readable");
  sp.send(a, Buffer.from("ping"));
  const ev = await readable;
  assert.deepEqual(ev, { err: null, readable: true, writable: false });
  assert.equal(sp.recv(b, 100).data.toString(), "ping");

  // Writable only when asked for; a writable socket fires on every turn.
  const writable = w.next((e) => e.writable, "writable");
  w.poller.start(true, true);
  assert.deepEqual(await writable, { err: null, readable: false, writable: true });

  // start(false, false) stops it.
  w.poller.start(false, false);
  await turns();
  const count = w.events.length;
  await turns();
  assert.equal(w.events.length, count);

  // It can be started again, and closing from inside the callback ends it.
  w.poller.close(); // libuv wants one handle per fd at a time
  let calls = 0;
  const p2 = new sp.Poller(b, function (err, rd, wr) {
    calls++;
    assert.equal(this, p2);
    p2.close();
    p2.close(); // idempotent
  });
  t.after(() => p2.close());
  p2.start(false, true);
  await turns();
  assert.equal(calls, 1);
  assert.throws(() => p2.start(true, false), { code: "ERR_INVALID_STATE" });
  p2.ref(); // no-ops after close
  p2.unref();
});

test("Poller callback runs in a callback scope: its microtasks run before other macrotasks", async (t) => {
  const { b } = pair(t);
  const order = [];
  const done = withGuard(
    new Promise((resolve) => {
      const p = new sp.Poller(b, () => {
        p.close();
        Promise.resolve().then(() => order.push("microtask"));
        process.nextTick(() => order.push("nextTick"));
        setImmediate(() => {
          order.push("immediate");
          resolve();
        });
      });
      t.after(() => p.close());
      p.start(false, true);
    }),
    "writable",
  );
  await done;
  assert.deepEqual(order, ["nextTick", "microtask", "immediate"]);
});

test("Poller reports a socket error as err with the real code", async (t) => {
  // b dies with a's datagram unread, which the kernel reports to a as
  // ECONNRESET (POLLERR); libuv alone would call that EBADF.
  const { a, b, closeOne } = pair(t);
  sp.send(a, Buffer.from("unread"));
  sp.send(b, Buffer.from("queued for a"));
  closeOne(b);
  const w = watch(t, a);
  const errored = w.next((e) => e.err, "error");
  w.poller.start(true, false);
  const ev = await errored;
  assert.ok(ev.err instanceof Error);
  assert.equal(ev.err.code, "ECONNRESET");
  assert.equal(ev.err.errno, -104);
  assert.equal(ev.err.syscall, "poll");
  assert.equal(ev.readable, false);
  // The error was consumed; what b sent before dying is still there, then EOF.
  assert.equal(sp.recv(a, 100).data.toString(), "queued for a");
  assert.equal(sp.recv(a, 100).data.length, 0);
});

test("a throwing Poller callback reaches uncaughtException", async () => {
  const script = `${childPrelude}
    process.on("uncaughtException", (e) => { console.log("caught " + e.message); process.exit(0); });
    const [a, b] = sp.socketpair();
    const p = new sp.Poller(a, () => { throw new Error("boom"); });
    p.start(false, true);`;
  const r = await runNode(["-e", script]);
  assert.equal(r.stdout.trim(), "caught boom", r.stderr);
  assert.equal(r.code, 0);
});

test("unref lets the process exit; ref (the default) keeps it alive", async () => {
  const unrefd = `${childPrelude}
    const [a, b] = sp.socketpair();
    const p = new sp.Poller(a, () => {});
    p.start(true, false);
    p.unref();
    process.on("exit", () => console.log("exiting"));`;
  const r = await runNode(["-e", unrefd]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), "exiting");

  // The same with ref() after unref(): the child waits on its stdin pipe until
  // we write, which it could not see if it had already exited.
  const refd = `${childPrelude}
    const p = new sp.Poller(0, (err, readable) => {
      console.log("readable " + readable);
      p.close();
    });
    p.start(true, false);
    p.unref();
    p.ref();
    console.log("ready");`;
  let wrote = false;
  const r2 = await runNode(["-e", refd], {
    input: "pipe",
    onStdout: (out, child) => {
      if (!wrote && out.includes("ready\n")) {
        wrote = true;
        child.stdin.end("x");
      }
    },
  });
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(r2.stdout, "ready\nreadable true\n");
});

test("garbage collection: an active Poller stays alive, a stopped one is collected safely", async () => {
  const script = `${childPrelude}
    const tick = () => new Promise((r) => setImmediate(r));
    (async () => {
      // Never closed, no JS reference: stopped ones are finalized (which
      // closes their handles), the active one must survive and still fire.
      const peers = [];
      for (let i = 0; i < 50; i++) {
        const [a, b] = sp.socketpair();
        const p = new sp.Poller(a, () => {});
        p.start(true, true);
        p.start(false, false);
        peers.push([a, b]);
      }
      const [x, y] = sp.socketpair();
      let fired = false;
      (() => {
        const p = new sp.Poller(x, (err, readable) => {
          fired = readable;
          p.close();
        });
        p.start(true, false);
      })();
      for (let i = 0; i < 5; i++) { globalThis.gc(); await tick(); }
      sp.send(y, Buffer.from("hi"));
      for (let i = 0; i < 50 && !fired; i++) await tick();
      console.log(fired ? "fired" : "lost");
    })();`;
  const r = await runNode(["--expose-gc", "-e", script]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), "fired");
});

test("a Worker ending with an open Poller does not abort the process", async () => {
  const script = `
    const { Worker } = require("node:worker_threads");
    const w = new Worker(${JSON.stringify(`${childPrelude}
      const { parentPort } = require("node:worker_threads");
      const [a, b] = sp.socketpair();
      const p = new sp.Poller(a, () => {});
      p.start(true, false);
      parentPort.postMessage("ready");`)}, { eval: true });
    w.on("message", () => w.terminate());
    w.on("exit", () => console.log("worker gone"));`;
  const r = await runNode(["-e", script]);
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), "worker gone");
});

test("connect to a missing path throws a Node-style ENOENT", () => {
  const p = path.join(os.tmpdir(), `seqpacket-missing-${process.pid}.sock`);
  assert.throws(() => sp.connect(p), (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.code, "ENOENT");
    assert.equal(e.errno, -2);
    assert.equal(e.syscall, "connect");
    assert.equal(e.address, p);
    assert.equal(e.message, `connect ENOENT ${p}`);
    return true;
  });
  assert.throws(() => sp.connect(Buffer.from(p)), { code: "ENOENT", address: p });
});

test("connect to a path longer than sun_path throws ENAMETOOLONG", () => {
  const p = "/tmp/" + "x".repeat(200);
  assert.throws(() => sp.connect(p), { code: "ENAMETOOLONG", syscall: "connect", address: p });
});

test("connect to a SOCK_SEQPACKET server; its datagram and fd arrive", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "seqpacket-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sockPath = path.join(dir, "s.sock");
  const server = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1])
s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
socket.send_fds(c, [b"\\x00hello"], [0])
`;
  const py = spawn("python3", ["-c", server, sockPath], { stdio: ["pipe", "pipe", "inherit"] });
  t.after(() => py.kill());
  const exited = new Promise((r) => py.on("exit", r));
  await withGuard(
    new Promise((resolve, reject) => {
      let out = "";
      py.on("error", reject);
      py.on("exit", (code) => reject(new Error(`python3 exited early: ${code}`)));
      py.stdout.on("data", (d) => (out += d) && out.includes("ready\n") && resolve());
    }),
    "python server",
  );

  const fd = sp.connect(sockPath);
  t.after(() => sp.close(fd));
  assert.ok(Number.isInteger(fd) && fd > 2);
  assert.ok(fdFlags(fd) & O_CLOEXEC, "socket is O_CLOEXEC");
  assert.ok(fdFlags(fd) & fs.constants.O_NONBLOCK, "socket is O_NONBLOCK");

  const w = watch(t, fd);
  const readable = w.next((e) => e.readable, "server datagram");
  w.poller.start(true, false);
  await readable;
  const r = sp.recv(fd, 1024);
  assert.ok(r.data.equals(Buffer.from("\x00hello")));
  assert.equal(r.fds.length, 1);
  // Node gives a child's stdio "pipe" as a Unix stream socket.
  const st = fs.fstatSync(r.fds[0]);
  assert.ok(st.isSocket() || st.isFIFO(), "the fd is python's stdin");
  assert.ok(fdFlags(r.fds[0]) & O_CLOEXEC);
  sp.close(r.fds[0]);

  // The server exits after sending: EOF follows.
  await withGuard(exited, "python exit");
  let eof = sp.recv(fd, 1024);
  if (eof === null) {
    await w.next((e) => e.readable, "EOF");
    eof = sp.recv(fd, 1024);
  }
  assert.equal(eof.data.length, 0);
  assert.deepEqual(eof.fds, []);
});

test("bad arguments throw TypeError or RangeError", (t) => {
  const { a } = pair(t);
  const buf = Buffer.from("x");
  assert.throws(() => sp.connect(5), TypeError);
  assert.throws(() => sp.connect(), TypeError);
  assert.throws(() => sp.connect("/tmp/a\0b"), TypeError);
  assert.throws(() => sp.send("3", buf), { name: "TypeError", code: "ERR_INVALID_ARG_TYPE" });
  assert.throws(() => sp.send(a, "x"), TypeError);
  assert.throws(() => sp.send(a, [1, 2]), TypeError);
  assert.throws(() => sp.send(a, new Uint16Array(2)), TypeError);
  assert.throws(() => sp.send(a, buf, 3), TypeError);
  assert.throws(() => sp.send(a, buf, ["3"]), TypeError);
  assert.throws(() => sp.send(a, buf, [-1]), RangeError);
  assert.throws(() => sp.send(a, buf, Array(17).fill(0)), RangeError);
  assert.throws(() => sp.send(-1, buf), { name: "RangeError", code: "ERR_OUT_OF_RANGE" });
  assert.throws(() => sp.send(1.5, buf), RangeError);
  assert.throws(() => sp.recv(a), TypeError);
  assert.throws(() => sp.recv(a, "10"), TypeError);
  assert.throws(() => sp.recv(a, 0), RangeError);
  assert.throws(() => sp.recv(a, NaN), RangeError);
  assert.throws(() => sp.recv(a, 16 * 1024 * 1024 + 1), RangeError);
  assert.equal(sp.recv(a, 16 * 1024 * 1024), null); // the maximum is allowed
  assert.throws(() => sp.close("1"), TypeError);
  assert.throws(() => new sp.Poller("1", () => {}), TypeError);
  assert.throws(() => new sp.Poller(a, 5), TypeError);
  assert.throws(() => sp.Poller(a, () => {}), TypeError);
  const p = new sp.Poller(a, () => {});
  t.after(() => p.close());
  assert.throws(() => p.start(1, 0), TypeError);
  assert.throws(() => p.start(true), TypeError);
  assert.throws(() => sp.Poller.prototype.start.call({}, true, false), TypeError);
  // Failed calls leave no exception behind: the addon still works.
  assert.equal(sp.send(a, buf), 1);
});
