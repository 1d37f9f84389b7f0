// The Node client against a real daemon, compared with node:fs/promises on a plain
// directory of the same shape: results, `code`, `errno` and the message.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fsp from "node:fs/promises";
import * as fs from "node:fs";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";

import { connect, ConnectionLost, Dirent, EscapeError } from "../dist/index.js";
import { chownTree, startDaemon, useDaemon } from "./daemon.mjs";

let d;
let c;
useDaemon(connect, (daemon, client) => { d = daemon; c = client; });

/** The same starting tree in `dir`. */
async function tree(dir) {
  await fsp.mkdir(join(dir, "d"));
  await fsp.mkdir(join(dir, "e"));
  await fsp.writeFile(join(dir, "f"), "hello");
  await fsp.writeFile(join(dir, "d", "g"), "g");
  await fsp.symlink("f", join(dir, "link"));
  await fsp.symlink("nowhere", join(dir, "dangling"));
}

/** An outcome to compare: the value, or the error's code, errno and message with the
 * plain directory's absolute prefix taken out (the daemon names the caller's paths). */
async function outcome(fn, prefix) {
  try {
    const v = await fn();
    return { ok: norm(v, prefix) };
  } catch (e) {
    return { code: e.code, errno: e.errno, message: String(e.message).split(prefix + "/").join("") };
  }
}

function norm(v, prefix) {
  if (typeof v === "string") return v.startsWith(prefix + "/") ? v.slice(prefix.length + 1) : v;
  if (Array.isArray(v)) {
    return v.map((x) => norm(x, prefix)).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
  }
  if (v instanceof Dirent || v instanceof fs.Dirent) {
    return { name: v.name, file: v.isFile(), dir: v.isDirectory(), link: v.isSymbolicLink() };
  }
  if (v && typeof v.isFile === "function") {
    return { size: v.size, file: v.isFile(), dir: v.isDirectory(), link: v.isSymbolicLink(), perm: v.mode & 0o7777,
             nlink: v.nlink };
  }
  return v;
}

describe("against node:fs/promises on a plain directory", () => {
  // [label, what node:fs does with an absolute path, what the client does with the relative one]
  const P = (p) => join(d.plain, p);
  const cases = [
    ["stat f", () => fsp.stat(P("f")), () => c.stat("f")],
    ["stat missing", () => fsp.stat(P("nope")), () => c.stat("nope")],
    ["stat f/x", () => fsp.stat(P("f/x")), () => c.stat("f/x")],
    ["stat link (followed)", () => fsp.stat(P("link")), () => c.stat("link")],
    ["stat dangling", () => fsp.stat(P("dangling")), () => c.stat("dangling")],
    ["lstat link", () => fsp.lstat(P("link")), () => c.lstat("link")],
    ["lstat missing", () => fsp.lstat(P("nope")), () => c.lstat("nope")],
    ["access f", () => fsp.access(P("f")), () => c.access("f")],
    ["access missing", () => fsp.access(P("nope")), () => c.access("nope")],
    ["readdir .", () => fsp.readdir(P(".")), () => c.readdir(".")],
    ["readdir d withFileTypes", () => fsp.readdir(P("d"), { withFileTypes: true }),
      () => c.readdir("d", { withFileTypes: true })],
    ["readdir . withFileTypes", () => fsp.readdir(P("."), { withFileTypes: true }),
      () => c.readdir(".", { withFileTypes: true })],
    ["readdir missing", () => fsp.readdir(P("nope")), () => c.readdir("nope")],
    ["readdir f", () => fsp.readdir(P("f")), () => c.readdir("f")],
    ["readdir recursive", () => fsp.readdir(P("."), { recursive: true }), () => c.readdir(".", { recursive: true })],
    ["readdir d recursive", () => fsp.readdir(P("d"), { recursive: true }), () => c.readdir("d", { recursive: true })],
    ["readlink link", () => fsp.readlink(P("link")), () => c.readlink("link")],
    ["readlink f", () => fsp.readlink(P("f")), () => c.readlink("f")],
    ["realpath link", () => fsp.realpath(P("link")), () => c.realpath("link")],
    ["realpath missing", () => fsp.realpath(P("nope")), () => c.realpath("nope")],
    ["realpath f/x", () => fsp.realpath(P("f/x")), () => c.realpath("f/x")],
    ["realpath dangling", () => fsp.realpath(P("dangling")), () => c.realpath("dangling")],
    ["mkdir d (exists)", () => fsp.mkdir(P("d")), () => c.mkdir("d")],
    ["mkdir x/y (no parent)", () => fsp.mkdir(P("x/y")), () => c.mkdir("x/y")],
    ["mkdir a/b/c recursive", () => fsp.mkdir(P("a/b/c"), { recursive: true }), () => c.mkdir("a/b/c", { recursive: true })],
    ["mkdir a/b recursive again", () => fsp.mkdir(P("a/b"), { recursive: true }), () => c.mkdir("a/b", { recursive: true })],
    ["mkdir f/x", () => fsp.mkdir(P("f/x")), () => c.mkdir("f/x")],
    ["mkdir m mode", () => fsp.mkdir(P("m"), { mode: 0o700 }), () => c.mkdir("m", { mode: 0o700 })],
    ["stat m", () => fsp.stat(P("m")).then((s) => s.mode & 0o777), () => c.stat("m").then((s) => s.mode & 0o777)],
    ["rmdir d (not empty)", () => fsp.rmdir(P("d")), () => c.rmdir("d")],
    ["rmdir f", () => fsp.rmdir(P("f")), () => c.rmdir("f")],
    ["rmdir e", () => fsp.rmdir(P("e")), () => c.rmdir("e")],
    ["unlink d", () => fsp.unlink(P("d")), () => c.unlink("d")],
    ["unlink missing", () => fsp.unlink(P("nope")), () => c.unlink("nope")],
    ["writeFile w", () => fsp.writeFile(P("w"), "written"), () => c.writeFile("w", "written")],
    ["readFile w", () => fsp.readFile(P("w"), "utf8"), () => c.readFile("w", "utf8")],
    ["readFile w buffer", () => fsp.readFile(P("w")), () => c.readFile("w")],
    ["readFile d", () => fsp.readFile(P("d")), () => c.readFile("d")],
    ["readFile missing", () => fsp.readFile(P("nope")), () => c.readFile("nope")],
    ["writeFile d", () => fsp.writeFile(P("d"), "x"), () => c.writeFile("d", "x")],
    ["writeFile x/y/z", () => fsp.writeFile(P("x/y/z"), "x"), () => c.writeFile("x/y/z", "x")],
    ["writeFile wx exists", () => fsp.writeFile(P("w"), "x", { flag: "wx" }), () => c.writeFile("w", "x", { flag: "wx" })],
    ["writeFile utf16", () => fsp.writeFile(P("u"), "é", "utf16le"), () => c.writeFile("u", "é", "utf16le")],
    ["readFile utf16", () => fsp.readFile(P("u")), () => c.readFile("u")],
    ["appendFile w", () => fsp.appendFile(P("w"), " more"), () => c.appendFile("w", " more")],
    ["appendFile new", () => fsp.appendFile(P("new"), "n"), () => c.appendFile("new", "n")],
    ["readFile w appended", () => fsp.readFile(P("w"), "utf8"), () => c.readFile("w", "utf8")],
    ["copyFile f f2", () => fsp.copyFile(P("f"), P("f2")), () => c.copyFile("f", "f2")],
    ["copyFile excl", () => fsp.copyFile(P("f"), P("f2"), fs.constants.COPYFILE_EXCL),
      () => c.copyFile("f", "f2", fs.constants.COPYFILE_EXCL)],
    ["copyFile missing", () => fsp.copyFile(P("nope"), P("f3")), () => c.copyFile("nope", "f3")],
    ["cp d dc recursive", () => fsp.cp(P("d"), P("dc"), { recursive: true }), () => c.cp("d", "dc", { recursive: true })],
    ["readdir dc", () => fsp.readdir(P("dc")), () => c.readdir("dc")],
    ["cp f fc", () => fsp.cp(P("f"), P("fc")), () => c.cp("f", "fc")],
    ["rename fc fr", () => fsp.rename(P("fc"), P("fr")), () => c.rename("fc", "fr")],
    ["rename missing", () => fsp.rename(P("nope"), P("x")), () => c.rename("nope", "x")],
    ["rename d onto f", () => fsp.rename(P("d"), P("f")), () => c.rename("d", "f")],
    ["symlink f l2", () => fsp.symlink("f", P("l2")), () => c.symlink("f", "l2")],
    ["symlink exists", () => fsp.symlink("f", P("l2")), () => c.symlink("f", "l2")],
    ["readlink l2", () => fsp.readlink(P("l2")), () => c.readlink("l2")],
    ["link f hard", () => fsp.link(P("f"), P("hard")), () => c.link("f", "hard")],
    ["link exists", () => fsp.link(P("f"), P("hard")), () => c.link("f", "hard")],
    ["stat hard", () => fsp.stat(P("hard")), () => c.stat("hard")],
    ["chmod f", () => fsp.chmod(P("f"), 0o640), () => c.chmod("f", 0o640)],
    ["chmod f octal string", () => fsp.chmod(P("f"), "600"), () => c.chmod("f", "600")],
    ["chmod missing", () => fsp.chmod(P("nope"), 0o600), () => c.chmod("nope", 0o600)],
    ["utimes f", () => fsp.utimes(P("f"), new Date(946684800000), 1e9 + 0.5),
      () => c.utimes("f", new Date(946684800000), 1e9 + 0.5)],
    ["stat f after", () => fsp.stat(P("f")), () => c.stat("f")],
    ["chmod through link", () => fsp.chmod(P("link"), 0o604), () => c.chmod("link", 0o604)],
    ["utimes through link", () => fsp.utimes(P("link"), 5, 6), () => c.utimes("link", 5, 6)],
    ["stat f via link", () => fsp.stat(P("f")).then((s) => [s.mode & 0o777, s.mtimeMs]),
      () => c.stat("f").then((s) => [s.mode & 0o777, s.mtimeMs])],
    ["utimes missing through dangling", () => fsp.utimes(P("dangling"), 5, 6), () => c.utimes("dangling", 5, 6)],
    ["times of f", () => fsp.stat(P("f")).then((s) => [s.atimeMs, s.mtimeMs, s.mtime.getTime()]),
      () => c.stat("f").then((s) => [s.atimeMs, s.mtimeMs, s.mtime.getTime()])],
    ["bigint times of f", () => fsp.stat(P("f"), { bigint: true }).then((s) => String([s.atimeNs, s.mtimeNs, s.mtimeMs])),
      () => c.stat("f", { bigint: true }).then((s) => String([s.atimeNs, s.mtimeNs, s.mtimeMs]))],
    ["utimes missing", () => fsp.utimes(P("nope"), 1, 1), () => c.utimes("nope", 1, 1)],
    ["truncate f 2", () => fsp.truncate(P("f"), 2), () => c.truncate("f", 2)],
    ["readFile f", () => fsp.readFile(P("f"), "utf8"), () => c.readFile("f", "utf8")],
    ["truncate f", () => fsp.truncate(P("f")), () => c.truncate("f")],
    ["truncate d", () => fsp.truncate(P("d")), () => c.truncate("d")],
    ["open missing", () => fsp.open(P("nope")), () => c.open("nope")],
    ["open d w", () => fsp.open(P("d"), "w"), () => c.open("d", "w")],
    ["rm d (dir, not recursive)", () => fsp.rm(P("d")), () => c.rm("d")],
    ["rm missing", () => fsp.rm(P("nope")), () => c.rm("nope")],
    ["rm missing force", () => fsp.rm(P("nope"), { force: true }), () => c.rm("nope", { force: true })],
    ["rm dc recursive", () => fsp.rm(P("dc"), { recursive: true }), () => c.rm("dc", { recursive: true })],
    ["readdir . at the end", () => fsp.readdir(P(".")), () => c.readdir(".")],
  ];

  it("every case gives the same outcome", async () => {
    await tree(d.plain);
    await tree(d.root);
    chownTree(d.root);
    const diffs = [];
    for (const [label, node, ours] of cases) {
      const want = await outcome(node, d.plain);
      const got = await outcome(ours, d.plain);
      // handles are not comparable, only that both opened or failed alike
      if (want.ok && typeof want.ok === "object" && typeof want.ok.close === "function") {
        await want.ok.close();
        await got.ok?.close?.();
        continue;
      }
      try {
        assert.deepEqual(got, want, label);
      } catch {
        diffs.push(`${label}:\n  node:fs  ${JSON.stringify(want)}\n  beneathd ${JSON.stringify(got)}`);
      }
    }
    assert.equal(diffs.length, 0, diffs.join("\n"));
  });
});

describe("escapes", () => {
  it("every method refuses a path leading out, and the outside stays as it was", async () => {
    await fsp.mkdir(join(d.root, "esc"));
    await fsp.writeFile(join(d.outside, "sentinel"), "keep");
    await fsp.mkdir(join(d.outside, "dir"));
    await fsp.symlink(d.outside, join(d.root, "esc", "out"));
    await fsp.symlink("/etc", join(d.root, "esc", "abs"));
    await fsp.symlink("../..", join(d.root, "esc", "up"));
    await fsp.writeFile(join(d.root, "esc", "in"), "in");
    chownTree(join(d.root, "esc"));
    const before = snapshot(d.outside);
    // E: the path leaves the root before its last step; T: a trailing slash after a final
    // link out (Go CVE-2026-39822): reads must be escapes, the rest may fail as os does
    const bad = ["/etc/passwd", "../outside/sentinel", "esc/out/sentinel", "esc/out/", "esc/up/outside/sentinel",
                 "/proc/self/root/etc/passwd", "esc/abs/passwd", "esc/out/dir/new", "esc/../../outside/sentinel"];
    const strictT = new Set(["stat", "lstat", "access", "readdir", "readdir types", "readdir recursive", "readlink",
                             "realpath", "du", "walk", "watch", "cp from", "readFile", "open r",
                             "createReadStream"]);
    const methods = [
      ["stat", (p) => c.stat(p)], ["lstat", (p) => c.lstat(p)], ["access", (p) => c.access(p)],
      ["readdir", (p) => c.readdir(p)], ["readdir types", (p) => c.readdir(p, { withFileTypes: true })],
      ["readdir recursive", (p) => c.readdir(p, { recursive: true })],
      ["readlink", (p) => c.readlink(p)], ["realpath", (p) => c.realpath(p)],
      ["mkdir", (p) => c.mkdir(p)], ["mkdir -p", (p) => c.mkdir(p + "/x", { recursive: true })],
      ["unlink", (p) => c.unlink(p)], ["rmdir", (p) => c.rmdir(p)], ["rm -rf", (p) => c.rm(p, { recursive: true, force: true })],
      ["rename from", (p) => c.rename(p, "esc/moved")], ["rename to", (p) => c.rename("esc/in", p)],
      ["move to", (p) => c.move("esc/in", p, { overwrite: true })], ["exchange", (p) => c.exchange("esc/in", p)],
      ["cp from", (p) => c.cp(p, "esc/copy", { recursive: true })], ["cp to", (p) => c.cp("esc/in", p)],
      ["copyFile from", (p) => c.copyFile(p, "esc/copy2")], ["copyFile to", (p) => c.copyFile("esc/in", p)],
      ["link from", (p) => c.link(p, "esc/hard")], ["link to", (p) => c.link("esc/in", p)],
      ["symlink at", (p) => c.symlink("x", p)], ["chmod", (p) => c.chmod(p, 0o777)],
      ["chown", (p) => c.chown(p, 0, 0)], ["utimes", (p) => c.utimes(p, 1, 1)], ["truncate", (p) => c.truncate(p)],
      ["readFile", (p) => c.readFile(p)], ["writeFile", (p) => c.writeFile(p, "x")],
      ["writeFile big", (p) => c.writeFile(p, Buffer.alloc(5 << 20))], ["appendFile", (p) => c.appendFile(p, "x")],
      ["open r", (p) => c.open(p)], ["open w", (p) => c.open(p, "w")], ["openAtomic", (p) => c.openAtomic(p)],
      ["du", (p) => c.du(p)], ["walk", async (p) => { for await (const _ of c.walk(p)) void _; }],
      ["watch", async (p) => { const w = c.watch(p); try { await w.ready; } finally { w.close(); } }],
      ["createReadStream", (p) => pipeline(c.createReadStream(p), async function* (s) { for await (const _ of s) yield _; })],
      ["createWriteStream", (p) => pipeline(Readable.from([Buffer.from("x")]), c.createWriteStream(p))],
    ];
    const leaks = [];
    for (const [name, fn] of methods) {
      for (const p of bad) {
        try {
          const r = await fn(p);
          await r?.close?.();
          leaks.push(`${name}(${p}) succeeded`);
        } catch (e) {
          const trailing = p === "esc/out/" && !strictT.has(name);
          if (e.code !== "EXDEV" && !(trailing && typeof e.code === "string" && e.code.startsWith("E"))) {
            leaks.push(`${name}(${p}): ${e.code} ${e.message}`);
          } else if (e.message.includes(d.root)) leaks.push(`${name}(${p}) names the root: ${e.message}`);
        }
      }
    }
    assert.deepEqual(snapshot(d.outside), before, "the outside changed");
    assert.equal(leaks.length, 0, leaks.join("\n"));
    await assert.rejects(c.exists("esc/out/sentinel"), { code: "EXDEV" }); // an escape, not a "no"
    const e = await c.stat("esc/out/sentinel").catch((x) => x);
    assert.ok(e instanceof EscapeError && e.errno === -18 && e.syscall === "stat" && e.path === "esc/out/sentinel");
  });

  it("stats: the daemon counts each escape it refused; stats cannot be batched", async () => {
    const before = await c.stats();
    await assert.rejects(c.stat("../x"), { code: "EXDEV" });
    const after = await c.stats();
    assert.equal(after.escapes, before.escapes + 1);
    assert.equal(after.errors, before.errors + 1);
    assert.equal(after.calls, before.calls + 2); // the stat and this stats call
    assert.ok(after.connections >= 1 && after.connections_total >= after.connections && after.peers_refused >= 0);
    await assert.rejects(async () => c.batch([["stats"]]), { code: "ERR_INVALID_ARG_VALUE" });
  });
});

function snapshot(dir) {
  const out = {};
  for (const name of fs.readdirSync(dir, { recursive: true })) {
    const st = fs.lstatSync(join(dir, name));
    out[name] = [st.mode, st.size, st.mtimeMs, st.isFile() ? fs.readFileSync(join(dir, name), "utf8") : null];
  }
  return out;
}

describe("files and streams", () => {
  it("writeFile and readFile of any size, through the fd above BIG_WRITE", async () => {
    const big = Buffer.alloc(70 << 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
    await c.writeFile("big.bin", big);
    const back = await c.readFile("big.bin");
    assert.ok(back.equals(big));
    const st = await c.stat("big.bin");
    assert.equal(st.size, big.length);
  });

  it("createReadStream start..end and createWriteStream published on finish only", async () => {
    await c.writeFile("s.txt", "0123456789");
    const parts = [];
    for await (const b of c.createReadStream("s.txt", { start: 2, end: 5 })) parts.push(b);
    assert.equal(Buffer.concat(parts).toString(), "2345");
    const w = c.createWriteStream("ws.txt");
    await new Promise((r) => w.once("ready", r));
    w.write("part 1, ");
    assert.equal(await c.exists("ws.txt"), false, "visible before finish");
    await new Promise((r, j) => w.end("part 2", (e) => (e ? j(e) : r())));
    assert.equal(await c.readFile("ws.txt", "utf8"), "part 1, part 2");
    const w2 = c.createWriteStream("ws2.txt");
    await new Promise((r) => w2.once("ready", r));
    w2.on("error", () => undefined);
    w2.write("never");
    w2.destroy(new Error("stop"));
    await new Promise((r) => w2.once("close", r));
    assert.equal(await c.exists("ws2.txt"), false, "a destroyed stream published");
    const names = await c.readdir(".");
    assert.ok(!names.some((n) => n.includes("beneathd")), `a temporary name was left: ${names}`);
  });

  it("open gives a handle over the daemon's fd; atomic writers publish on close, not on discard", async () => {
    const fh = await c.open("s.txt", "r+");
    const { bytesRead, buffer } = await fh.read(Buffer.alloc(4), 0, 4, 0);
    assert.equal(buffer.subarray(0, bytesRead).toString(), "0123");
    await fh.write("AB", 0);
    assert.equal((await fh.stat()).size, 10);
    await fh.truncate(4);
    await fh.close();
    await fh.close(); // once only
    assert.equal(await c.readFile("s.txt", "utf8"), "AB23");
    const a = await c.openAtomic("atomic.txt");
    await a.write("whole");
    assert.equal(await c.exists("atomic.txt"), false);
    await a.close();
    assert.equal(await c.readFile("atomic.txt", "utf8"), "whole");
    const b = await c.openAtomic("atomic.txt");
    await b.write("never");
    await b.discard();
    assert.equal(await c.readFile("atomic.txt", "utf8"), "whole");
    await assert.rejects(c.openAtomic("atomic.txt", { exclusive: true }), { code: "EEXIST" });
    const late = await c.openAtomic("late.txt", { exclusive: true });
    await late.write("mine");
    await c.writeFile("late.txt", "theirs"); // the name appears meanwhile
    await assert.rejects(late.close(), { code: "EEXIST" });
    assert.equal(await c.readFile("late.txt", "utf8"), "theirs");
    assert.equal(late.fd, -1);
  });

  it("a handle's close waits for what is in flight; a destroyed stream stops and publishes nothing", async () => {
    const big = Buffer.alloc(40 << 20, 1);
    const fh = await c.open("inflight.bin", "w");
    const writing = fh.writeFile(big);
    await fh.close(); // waits for the write: the fd is never closed under it
    await writing;
    assert.equal((await c.stat("inflight.bin")).size, big.length);
    const count = () => fs.readdirSync("/proc/self/fd").length;
    const before = count();
    const w = c.createWriteStream("destroyed.bin");
    w.on("error", () => undefined);
    await new Promise((r) => w.once("ready", r));
    w.write(big);
    w.destroy(new Error("stop"));
    await new Promise((r) => w.once("close", r));
    assert.equal(await c.exists("destroyed.bin"), false);
    assert.equal(count(), before);
    assert.throws(() => c.createWriteStream("x", { flags: "a" }), { code: "ERR_INVALID_ARG_VALUE" });
  });

  it("fds are closed exactly once: 10,000 opens leave the fd count as it was", async () => {
    await c.writeFile("fd.txt", "x");
    const count = () => fs.readdirSync("/proc/self/fd").length;
    const before = count();
    for (let round = 0; round < 100; round++) {
      const hs = await Promise.all(Array.from({ length: 100 }, () => c.open("fd.txt")));
      await Promise.all(hs.map((h) => h.close()));
      for (const h of hs) assert.equal(h.fd, -1);
    }
    for (let i = 0; i < 50; i++) await c.readFile("fd.txt");
    assert.equal(count(), before);
  });
});

describe("pipelining, walk, cancellation", () => {
  it("many calls in flight from one event loop", async () => {
    await c.writeFile("p.txt", "p");
    const calls = [];
    for (let i = 0; i < 3000; i++) {
      calls.push(i % 3 === 0 ? c.stat("p.txt").then((s) => s.size) : i % 3 === 1 ? c.readFile("p.txt", "utf8")
        : c.exists("nope").then(String));
    }
    const got = await Promise.all(calls);
    got.forEach((v, i) => assert.equal(v, i % 3 === 0 ? 1 : i % 3 === 1 ? "p" : "false"));
  });

  it("walk streams the tree, prunes what is removed from dirnames, and stops early", async () => {
    await c.mkdir("wt/a/b", { recursive: true });
    await c.mkdir("wt/skip/deep", { recursive: true });
    await c.writeFile("wt/a/f", "f");
    const seen = [];
    for await (const [dirpath, dirnames, filenames] of c.walk("wt")) {
      seen.push([dirpath, [...dirnames].sort(), filenames]);
      const i = dirnames.indexOf("skip");
      if (i >= 0) dirnames.splice(i, 1);
    }
    assert.deepEqual(seen.map((t) => t[0]).sort(), ["wt", "wt/a", "wt/a/b"]);
    const slashed = [];
    for await (const [dirpath, dirnames] of c.walk("wt/")) { // a trailing slash on the top changes nothing
      slashed.push(dirpath);
      dirnames.splice(dirnames.indexOf("skip") >>> 0, dirnames.includes("skip") ? 1 : 0);
    }
    assert.deepEqual(slashed.sort(), ["wt", "wt/a", "wt/a/b"]);
    assert.deepEqual((await c.readdir("wt/", { recursive: true })).sort(),
                     (await c.readdir("wt", { recursive: true })).sort());
    assert.deepEqual((await c.readdir("wt", { recursive: true })).sort(),
                     ["a", "a/b", "a/f", "skip", "skip/deep"]);
    for await (const t of c.walk(Buffer.from("wt"))) {
      assert.ok(Buffer.isBuffer(t[0]));
      break; // leaves early: the daemon is told to stop
    }
    assert.equal((await c.stat("wt")).isDirectory(), true); // the connection still works
  });

  it("an AbortSignal stops a long cp -r in the daemon; timeout gives ETIMEDOUT", async () => {
    const src = join(d.root, "tree");
    fs.mkdirSync(src);
    for (let i = 0; i < 200; i++) {
      const sub = join(src, `d${i}`);
      fs.mkdirSync(sub);
      for (let j = 0; j < 100; j++) fs.writeFileSync(join(sub, `f${j}`), "x".repeat(100));
    }
    chownTree(src);
    const ac = new AbortController();
    let progressed = 0;
    const cp = c.cp("tree", "copy", { recursive: true, signal: ac.signal,
      progress: (p) => { progressed = p.entries; if (p.entries > 0) ac.abort(); } });
    await assert.rejects(cp, { name: "AbortError", code: "ABORT_ERR" });
    assert.ok(progressed > 0);
    // the daemon stopped: the copy stops growing, short of the whole tree
    let last = -1;
    let n = count(join(d.root, "copy"));
    while (n !== last) {
      last = n;
      await new Promise((r) => setTimeout(r, 300));
      n = count(join(d.root, "copy"));
    }
    assert.ok(n < 20200, `the copy went on to the end (${n} entries)`);
    await assert.rejects(c.cp("tree", "copy2", { recursive: true, timeout: 1 }), { code: "ETIMEDOUT" });
    await assert.rejects(c.stat("f", { signal: AbortSignal.abort() }), { name: "AbortError" });
    assert.equal((await c.stat("tree")).isDirectory(), true);
  });
});

function count(dir) {
  try {
    return fs.readdirSync(dir, { recursive: true }).length;
  } catch {
    return 0;
  }
}

describe("bad input", () => {
  it("wrong types, huge and NUL-holding strings give Node's argument errors, sent nowhere", async () => {
    await assert.rejects(c.stat(123), { name: "TypeError", code: "ERR_INVALID_ARG_TYPE" });
    await assert.rejects(c.stat(undefined), { code: "ERR_INVALID_ARG_TYPE" });
    await assert.rejects(c.stat("a\0b"), { code: "ERR_INVALID_ARG_VALUE" });
    await assert.rejects(c.stat("x".repeat(100_000)), (e) => e.code === "ERR_INVALID_ARG_VALUE"
      && /65536 bytes/.test(e.message));
    await assert.rejects(c.writeFile("w", 42), { code: "ERR_INVALID_ARG_TYPE" });
    await assert.rejects(c.chmod("f", "rwx"), { code: "ERR_INVALID_ARG_VALUE" });
    await assert.rejects(c.utimes("f", "soon", 1), { code: "ERR_INVALID_ARG_TYPE" });
    await assert.rejects(c.open("f", "q"), { code: "ERR_INVALID_ARG_VALUE" });
    await assert.rejects(c.copyFile("f", "g", 99), { code: "ERR_INVALID_ARG_VALUE" });
    await assert.rejects(c.cp("f", "g", { progress: 1 }), { code: "ERR_INVALID_ARG_TYPE" });
    assert.equal((await c.stat(".")).isDirectory(), true);
  });

  it("names that are not UTF-8 round-trip as Buffers", async () => {
    const name = Buffer.from([0x6e, 0xff, 0xfe, 0x2e]);
    await c.mkdir(Buffer.from("nb"));
    await c.writeFile(Buffer.concat([Buffer.from("nb/"), name]), "odd");
    const names = await c.readdir(Buffer.from("nb"));
    assert.equal(names.length, 1);
    assert.ok(Buffer.isBuffer(names[0]) && names[0].equals(name));
    const asStrings = await c.readdir("nb");
    assert.equal(asStrings[0], name.toString("utf8")); // as node:fs decodes it
    const ents = await c.readdir("nb", { withFileTypes: true, encoding: "buffer" });
    assert.ok(ents[0].name.equals(name) && ents[0].isFile());
    assert.equal((await c.readFile(Buffer.concat([Buffer.from("nb/"), name]), "utf8")), "odd");
  });
});

describe("connections", () => {
  it("a missing socket is ENOENT in Node's shape; a dead daemon is ConnectionLost for every call", async () => {
    await assert.rejects(async () => (await connect(join(d.base, "no.sock"))).stat("."),
      (e) => e.code === "ENOENT" && e.errno === -2 && e.syscall === "connect");
    const d2 = await startDaemon();
    try {
      const c2 = await connect(d2.socket);
      assert.equal((await c2.stat(".")).isDirectory(), true);
      d2.proc.kill("SIGSTOP"); // frozen: the calls below are surely in flight when it dies
      const inflight = Array.from({ length: 200 }, () => c2.stat("."));
      await new Promise((r) => setTimeout(r, 50));
      d2.proc.kill("SIGKILL");
      const results = await Promise.allSettled(inflight);
      const lost = results.filter((r) => r.status === "rejected");
      assert.equal(lost.length, 200);
      for (const r of lost) {
        assert.ok(r.reason instanceof ConnectionLost && r.reason.code === "ECONNRESET", String(r.reason));
        assert.ok(!String(r.reason.message).includes(d2.root));
      }
      // the next call tries to connect again: no daemon, so a connect error in Node's shape
      await new Promise((r) => d2.proc.exitCode !== null || d2.proc.signalCode !== null ? r() : d2.proc.once("exit", r));
      await assert.rejects(c2.stat("."), (e) => ["ENOENT", "ECONNREFUSED"].includes(e.code) && e.syscall === "connect");
      // a daemon in its place: the next call connects anew (nothing in flight is re-sent)
      const d3 = await startDaemon({ socket: d2.socket, root: d2.root });
      try {
        assert.equal((await c2.stat(".")).isDirectory(), true);
      } finally {
        await c2.close();
        await d3.stop();
      }
      await assert.rejects(c2.stat("."), (e) => e instanceof ConnectionLost); // closed by us: stays closed
    } finally {
      await d2.stop();
    }
  });
});

describe("readdir withFileTypes, packed", () => {
  it("a listing of 1 MiB or more (a passed memfd) says what fs says, stats and link texts too", async () => {
    const top = join(d.root, "wide");
    await fsp.mkdir(top);
    for (let i = 0; i < 10000; i++) {
      const name = join(top, `e-${String(i).padStart(5, "0")}`);
      if (i % 10 === 9) await fsp.symlink(`e-${String(i - 1).padStart(5, "0")}`, name);
      else await fsp.writeFile(name, "x".repeat(i % 100));
    }
    await fsp.mkdir(join(top, "sub"));
    chownTree(top);
    const got = await c.readdir("wide", { withFileTypes: true });
    const want = await fsp.readdir(top, { withFileTypes: true });
    assert.equal(got.length, want.length);
    const byName = new Map(want.map((e) => [e.name, e]));
    for (const e of got) {
      const w = byName.get(e.name);
      assert.ok(w, e.name);
      assert.equal(e.parentPath, "wide");
      assert.equal(e.isFile(), w.isFile(), e.name);
      assert.equal(e.isDirectory(), w.isDirectory(), e.name);
      assert.equal(e.isSymbolicLink(), w.isSymbolicLink(), e.name);
      const st = await fsp.lstat(join(top, e.name));
      assert.equal(e.stats.ino, st.ino, e.name);
      assert.equal(e.stats.size, st.size, e.name);
      assert.equal(e.stats.mode, st.mode, e.name);
      assert.equal(e.linkTarget, e.isSymbolicLink() ? await fsp.readlink(join(top, e.name)) : null, e.name);
    }
    const bufs = await c.readdir(Buffer.from("wide"), { withFileTypes: true });
    assert.ok(Buffer.isBuffer(bufs[0].name) && bufs.length === got.length);
    await c.rm("wide", { recursive: true });
  });
});
