// Client.batch against a real daemon: calls in the client's own vocabulary, one request,
// each slot what the call alone gives (its value, or its error returned with the caller's
// paths and Node's code, errno and message), stopOnError, refusals before anything is sent,
// escapes in their slots, a batch of thousands, cancelling.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fsp from "node:fs/promises";
import * as fs from "node:fs";
import { join } from "node:path";

import { connect, Dirent, EscapeError, MAX_BATCH } from "../dist/index.js";
import { chownTree, useDaemon } from "./daemon.mjs";

let d;
let c;
useDaemon(connect, (daemon, client) => { d = daemon; c = client; });

/** The same starting tree in `dir`. */
async function tree(dir, outside) {
  await fsp.mkdir(join(dir, "d"));
  await fsp.writeFile(join(dir, "f"), "hello");
  await fsp.writeFile(join(dir, "d", "g"), "g");
  await fsp.symlink("f", join(dir, "link"));
  await fsp.symlink("nowhere", join(dir, "dangling"));
  if (outside !== undefined) await fsp.symlink(outside, join(dir, "out"));
}

/** A value or error as plain data, to compare (times left out: reads move atimes). */
function shape(v, prefix) {
  if (v instanceof Error) {
    const strip = (s) => (typeof s === "string" && prefix !== undefined ? s.split(prefix + "/").join("") : s);
    return { error: v.name, code: v.code, errno: v.errno, syscall: v.syscall, path: strip(v.path), dest: strip(v.dest),
             message: strip(String(v.message)) };
  }
  if (Buffer.isBuffer(v)) return { buffer: v.toString("hex") };
  if (Array.isArray(v)) return v.map((x) => shape(x, prefix));
  if (v instanceof Dirent || v instanceof fs.Dirent) {
    return { name: shape(v.name), parentPath: shape(v.parentPath), file: v.isFile(), dir: v.isDirectory(),
             link: v.isSymbolicLink(), linkTarget: v.linkTarget };
  }
  if (v && typeof v.isFile === "function") {
    return { size: v.size, ino: v.ino, mode: v.mode, nlink: v.nlink, file: v.isFile(), dir: v.isDirectory(),
             link: v.isSymbolicLink(), bigint: typeof v.size === "bigint" ? "yes" : "no" };
  }
  return v;
}

async function alone(name, args) {
  try {
    return await c[name](...args);
  } catch (e) {
    return e;
  }
}

/** Count the request datagram groups sent while `fn` runs (one per request). */
async function sends(fn) {
  const t = c.transport;
  const orig = t.send;
  let n = 0;
  t.send = function (datagrams) { n++; return orig.call(this, datagrams); };
  try {
    return { value: await fn(), sends: n };
  } finally {
    t.send = orig;
  }
}

async function refused(p, pattern) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof TypeError, String(e));
    assert.equal(e.code, "ERR_INVALID_ARG_VALUE");
    if (pattern !== undefined) assert.match(e.message, pattern);
    return true;
  });
}

describe("batch", () => {
  it("has each slot in order, equal to what the call alone gives", async () => {
    await tree(d.root, d.outside);
    chownTree(d.root);
    const R = fs.constants.R_OK;
    const calls = [
      ["stat", "f"], ["stat", "nope"], ["stat", "f/x"], ["stat", "link"], ["stat", "dangling"], ["lstat", "link"],
      ["lstat", Buffer.from("f")], ["stat", "f", { bigint: true }], ["access", "f"], ["access", "nope"],
      ["access", "f", R], ["access", "f", 99], ["exists", "f"], ["exists", "nope"], ["readlink", "link"],
      ["readlink", "f"], ["readlink", Buffer.from("link")], ["readlink", "link", "buffer"], ["realpath", "link"],
      ["realpath", "nope"], ["realpath", "dangling"], ["realpath", "."], ["realpath", "d/g", { encoding: "buffer" }],
      ["readdir", "."], ["readdir", "d", { withFileTypes: true }], ["readdir", ".", { withFileTypes: true }],
      ["readdir", Buffer.from("d")], ["readdir", "nope"], ["readdir", "f"], ["readFile", "f"],
      ["readFile", "f", "utf8"], ["readFile", "f", { encoding: "latin1" }], ["readFile", "nope"], ["readFile", "d"],
      ["du", "d"], ["du", "nope"], ["stat", "out/x"], ["readFile", "out/sentinel"], ["stat", "../x"],
      ["stat", "/etc/passwd"], ["stat", 42], ["stat", "a\0b"], ["readFile", "f", { flag: "bogus" }],
      ["rename", "nope", "x"], ["unlink", "d"], ["rmdir", "f"], ["mkdir", "d"], ["mkdir", "x/y"],
      ["rm", "d"], ["rm", "nope"], ["copyFile", "nope", "f3"], ["copyFile", "f", "f3", 8], ["truncate", "d"],
      ["chown", "f", -2, 0], ["cp", "d", "dd"], ["link", "nope", "h"], ["symlink", "f", "link"],
    ];
    const { value: got, sends: n } = await sends(() => c.batch(calls));
    assert.equal(n, 1, "one request");
    assert.equal(got.length, calls.length);
    const diffs = [];
    for (let i = 0; i < calls.length; i++) {
      const want = shape(await alone(calls[i][0], calls[i].slice(1)));
      const have = shape(got[i]);
      try {
        assert.deepEqual(have, want);
      } catch {
        diffs.push(`${JSON.stringify(calls[i])}:\n  alone ${JSON.stringify(want)}\n  batch ${JSON.stringify(have)}`);
      }
    }
    assert.equal(diffs.length, 0, diffs.join("\n"));
    // errors are returned, not thrown, as the single calls build them
    assert.ok(got[1] instanceof Error && !(got[1] instanceof EscapeError));
    const slot = (...call) => got[calls.findIndex((x) => JSON.stringify(x) === JSON.stringify(call))];
    assert.equal(got[1].message, "ENOENT: no such file or directory, stat 'nope'");
    assert.deepEqual([got[1].code, got[1].errno, got[1].syscall, got[1].path], ["ENOENT", -2, "stat", "nope"]);
    assert.deepEqual([slot("rename", "nope", "x").path, slot("rename", "nope", "x").dest], ["nope", "x"]);
    for (const p of ["out/x", "../x", "/etc/passwd"]) assert.ok(slot("stat", p) instanceof EscapeError, p);
    assert.ok(slot("readFile", "out/sentinel") instanceof EscapeError);
    assert.equal(slot("stat", 42).code, "ERR_INVALID_ARG_TYPE"); // a bad argument is that call's error, in its slot
    assert.equal(slot("readdir", "d", { withFileTypes: true })[0].parentPath, "d");
    const ldir = slot("readdir", ".", { withFileTypes: true }).find((e) => e.name === "link");
    assert.equal(ldir.linkTarget, "f"); // scandir in a batch carries the link texts
  });

  it("names errors as node:fs does", async () => {
    await tree(d.plain);
    const P = (p) => join(d.plain, p);
    const cases = [
      [["stat", "nope"], () => fsp.stat(P("nope"))],
      [["stat", "f/x"], () => fsp.stat(P("f/x"))],
      [["lstat", "nope"], () => fsp.lstat(P("nope"))],
      [["readdir", "f"], () => fsp.readdir(P("f"))],
      [["readlink", "f"], () => fsp.readlink(P("f"))],
      [["realpath", "nope"], () => fsp.realpath(P("nope"))],
      [["realpath", "f/x"], () => fsp.realpath(P("f/x"))], // ENOTDIR, as realpath(3)
      [["mkdir", "d"], () => fsp.mkdir(P("d"))],
      [["mkdir", "x/y"], () => fsp.mkdir(P("x/y"))],
      [["rmdir", "d"], () => fsp.rmdir(P("d"))],
      [["unlink", "nope"], () => fsp.unlink(P("nope"))],
      [["rename", "nope", "x"], () => fsp.rename(P("nope"), P("x"))],
      [["readFile", "d"], () => fsp.readFile(P("d"))],
      [["readFile", "nope"], () => fsp.readFile(P("nope"))],
      [["writeFile", "d", "x"], () => fsp.writeFile(P("d"), "x")],
      [["rm", "d"], () => fsp.rm(P("d"))],
      [["rm", "nope"], () => fsp.rm(P("nope"))],
      [["copyFile", "nope", "f3"], () => fsp.copyFile(P("nope"), P("f3"))],
      [["copyFile", "f", "d/g", fs.constants.COPYFILE_EXCL], () => fsp.copyFile(P("f"), P("d/g"), fs.constants.COPYFILE_EXCL)],
      [["link", "f", "d/g"], () => fsp.link(P("f"), P("d/g"))],
      [["symlink", "f", "link"], () => fsp.symlink("f", P("link"))],
      [["truncate", "d"], () => fsp.truncate(P("d"))],
      [["chmod", "nope", 0o600], () => fsp.chmod(P("nope"), 0o600)],
      [["access", "nope"], () => fsp.access(P("nope"))],
    ];
    const got = await c.batch(cases.map(([call]) => call));
    const diffs = [];
    for (let i = 0; i < cases.length; i++) {
      let want;
      try {
        await cases[i][1]();
        want = "no error";
      } catch (e) {
        want = e;
      }
      const w = shape(want, d.plain);
      const g = shape(got[i]);
      delete w.error; // node:fs errors are plain Errors; ours too, except ERR_FS_EISDIR's SystemError
      delete g.error;
      try {
        assert.deepEqual(g, w);
      } catch {
        diffs.push(`${JSON.stringify(cases[i][0])}:\n  node:fs  ${JSON.stringify(w)}\n  batch    ${JSON.stringify(g)}`);
      }
    }
    assert.equal(diffs.length, 0, diffs.join("\n"));
  });

  it("runs mutating calls in order, each as the method does", async () => {
    const t0 = new Date(946684800000);
    const got = await c.batch([
      ["mkdir", "m/a/b", { recursive: true }],            // 0 the first made
      ["mkdir", "m/a/b", { recursive: true }],            // 1 none made
      ["writeFile", "m/a/b/f", "one"],                    // 2
      ["writeFile", "m/a/b/f", "two"],                    // 3 replaced
      ["readFile", "m/a/b/f", "utf8"],                    // 4
      ["copyFile", "m/a/b/f", "m/g"],                     // 5
      ["copyFile", "m/a/b/f", "m/g", fs.constants.COPYFILE_EXCL], // 6 EEXIST
      ["cp", "m/a", "m/c", { recursive: true }],          // 7
      ["writeFile", "m/g", "gg"],                         // 8
      ["cp", "m/g", "m/c/b/f", { force: false }],         // 9 skipped: it exists
      ["readFile", "m/c/b/f", "utf8"],                    // 10 "two"
      ["cp", "m/g", "m/c/b/f", { force: false, errorOnExist: true }], // 11 EEXIST
      ["rename", "m/g", "m/h"],                           // 12
      ["link", "m/h", "m/h2"],                            // 13
      ["symlink", "h", "m/s"],                            // 14
      ["readlink", "m/s"],                                // 15
      ["chmod", "m/h", 0o640],                            // 16
      ["stat", "m/h2"],                                   // 17 nlink 2, mode 640
      ["truncate", "m/h", 1],                             // 18
      ["readFile", "m/h", "utf8"],                        // 19 "g"
      ["lutimes", "m/h", t0, 1e9],                        // 20
      ["lstat", "m/h"],                                   // 21
      ["chown", "m/h", -1, -1],                           // 22
      ["mkdir", "m"],                                     // 23 EEXIST
      ["rmdir", "m"],                                     // 24 ENOTEMPTY
      ["unlink", "m/h2"],                                 // 25
      ["exchange", "m/h", "m/c"],                         // 26
      ["stat", "m/h"],                                    // 27 a directory now
      ["rm", "m/h", { recursive: true }],                 // 28
      ["rm", "m/a"],                                      // 29 ERR_FS_EISDIR
      ["move", "m/a", "m/z"],                             // 30
      ["move", "m/c", "m/z"],                             // 31 EEXIST (no overwrite)
      ["readdir", "m"],                                   // 32
      ["rm", "m/nope", { force: true }],                  // 33
      ["writeFile", "m/u", "é", "utf16le"],               // 34
      ["readFile", "m/u"],                                // 35
      ["mkdir", Buffer.from("m/q/r"), { recursive: true, mode: 0o700 }], // 36 a Buffer back
      ["symlink", "z", "m/s2"],                           // 37
      ["chmod", "m/s2", 0o711],                           // 38 a batch does not follow a final link
      ["stat", "m/z"],                                    // 39 untouched
    ]);
    const ok = (i, v) => assert.deepEqual(got[i], v, `slot ${i}: ${got[i]}`);
    const err = (i, code) => {
      assert.ok(got[i] instanceof Error, `slot ${i}: ${got[i]}`);
      assert.equal(got[i].code, code, `slot ${i}: ${got[i].message}`);
    };
    ok(0, "m"); ok(1, undefined); ok(2, undefined); ok(3, undefined); ok(4, "two"); ok(5, undefined);
    err(6, "EEXIST"); assert.equal(got[6].path, "m/a/b/f"); assert.equal(got[6].dest, "m/g");
    ok(7, undefined); ok(8, undefined); ok(9, undefined); ok(10, "two"); err(11, "EEXIST");
    ok(12, undefined); ok(13, undefined); ok(14, undefined); ok(15, "h"); ok(16, undefined);
    assert.equal(got[17].nlink, 2); assert.equal(got[17].mode & 0o777, 0o640);
    ok(18, undefined); ok(19, "g"); ok(20, undefined);
    assert.equal(got[21].atimeMs, t0.getTime()); assert.equal(got[21].mtimeMs, 1e12);
    ok(22, undefined); err(23, "EEXIST"); err(24, "ENOTEMPTY"); ok(25, undefined); ok(26, undefined);
    assert.ok(got[27].isDirectory());
    ok(28, undefined);
    err(29, "ERR_FS_EISDIR"); assert.equal(got[29].name, "SystemError");
    ok(30, undefined); err(31, "EEXIST");
    assert.deepEqual([...got[32]].sort(), ["c", "s", "z"]);
    ok(33, undefined); ok(34, undefined); assert.equal(got[35].toString("utf16le"), "é");
    assert.ok(Buffer.isBuffer(got[36])); assert.equal(got[36].toString(), "m/q");
    assert.equal((await c.stat("m/q/r")).mode & 0o077, 0); // the mode given
    ok(37, undefined);
    assert.ok(["ENOTSUP", "EOPNOTSUPP", "ELOOP"].includes(got[38].code), got[38].message);
    assert.equal(got[38].path, "m/s2");
    assert.notEqual(got[39].mode & 0o777, 0o711);
    assert.equal(await c.readFile("m/c", "utf8"), "g"); // the file exchanged into m/c
  });

  it("stopOnError: the calls after the first failure are not run", async () => {
    await c.mkdir("stop");
    let got = await c.batch([["exists", "stop"], ["writeFile", "stop/a", "a"], ["unlink", "stop/nope"],
                             ["writeFile", "stop/b", "b"], ["stat", "stop"]], { stopOnError: true });
    assert.equal(got.length, 5);
    assert.equal(got[0], true);
    assert.equal(got[1], undefined);
    assert.equal(got[2].code, "ENOENT");
    assert.equal(got[2].path, "stop/nope");
    assert.deepEqual(got.slice(3), [undefined, undefined]);
    assert.deepEqual((await c.readdir("stop")).sort(), ["a"]); // b was not written
    // without it, the rest runs
    got = await c.batch([["unlink", "stop/nope"], ["writeFile", "stop/b", "b"], ["exists", "stop/b"]]);
    assert.equal(got[0].code, "ENOENT");
    assert.deepEqual(got.slice(1), [undefined, true]);
    // a bad argument fails here, in its slot: with stopOnError nothing after it is sent
    got = await c.batch([["writeFile", "stop/c", "c"], ["stat", 42], ["writeFile", "stop/d", "d"]], { stopOnError: true });
    assert.equal(got[0], undefined);
    assert.equal(got[1].code, "ERR_INVALID_ARG_TYPE");
    assert.equal(got[2], undefined);
    assert.equal(await c.exists("stop/c"), true);
    assert.equal(await c.exists("stop/d"), false);
    got = await c.batch([["stat", 42], ["writeFile", "stop/d", "d"]]);
    assert.equal(got[1], undefined);
    assert.equal(await c.exists("stop/d"), true);
    // a call made of two daemon calls (realpath: a stat, then the realpath) stops at the first
    got = await c.batch([["realpath", "stop/nope"], ["writeFile", "stop/e", "e"]], { stopOnError: true });
    assert.equal(got[0].code, "ENOENT");
    assert.equal(got[0].syscall, "realpath");
    assert.equal(got[1], undefined);
    assert.equal(await c.exists("stop/e"), false);
    // an escape stops it too
    got = await c.batch([["stat", "../x"], ["writeFile", "stop/e", "e"]], { stopOnError: true });
    assert.ok(got[0] instanceof EscapeError);
    assert.equal(got[1], undefined);
    // what the client decides after a reply is refused with stopOnError (the daemon could not stop there)
    await refused(c.batch([["access", "stop/a", fs.constants.W_OK]], { stopOnError: true }), /stopOnError/);
    await refused(c.batch([["cp", "stop/a", "stop/b", { force: false }]], { stopOnError: true }), /errorOnExist/);
    got = await c.batch([["access", "stop/a", fs.constants.W_OK], ["cp", "stop/a", "stop/b", { force: false }],
                         ["access", "stop/a"]]);
    assert.deepEqual(got, [undefined, undefined, undefined]);
    await assert.rejects(c.batch([["stat", "x"]], { stopOnError: "yes" }), { code: "ERR_INVALID_ARG_TYPE" });
  });

  it("refuses what cannot be batched, before sending anything", async () => {
    const bad = [
      [["open", "f"], /fd/], [["openAtomic", "f"], /fd/], [["createReadStream", "f"], /stream/],
      [["createWriteStream", "f"], /stream/], [["appendFile", "f", "x"], /appendFile/], [["watch", "."], /streams/],
      [["walk", "."], /streams/], [["batch", [["stat", "f"]]], /batch/], [["utimes", "f", 1, 1], /lutimes/],
      [["readdir", ".", { recursive: true }], /walk/], [["writeFile", "f", "x", { flag: "a" }], /appends/],
      [["writeFile", "f", "x", { flag: "wx" }], /atomic writer/], [["readFile", "f", { flag: "r+" }], /writing/],
      [["stat", "f", { signal: new AbortController().signal }], /signal/], [["cp", "f", "g", { timeout: 5 }], /timeout/],
      [["rm", "d", { progress: () => {} }], /progress/], [["read_file", "f"], /not a method/],
      [["close"], /not a file operation/], [["constructor"], /not a method/], [["toString"], /not a method/],
    ];
    const { sends: n } = await sends(async () => {
      for (const [call, pattern] of bad) {
        await refused(c.batch([["writeFile", "refused-marker", "x"], ["stat", "f"], call]), pattern);
      }
    });
    assert.equal(n, 0);
    assert.equal(await c.exists("refused-marker"), false);
    await assert.rejects(c.batch("stat"), { code: "ERR_INVALID_ARG_TYPE" });
    await assert.rejects(c.batch([["stat", "f"], "stat"]), { code: "ERR_INVALID_ARG_TYPE", message: /calls\[1\]/ });
    await assert.rejects(c.batch([[]]), { code: "ERR_INVALID_ARG_TYPE" });
    await assert.rejects(c.batch([[42, "f"]]), { code: "ERR_INVALID_ARG_TYPE" });
    const many = Array.from({ length: MAX_BATCH + 1 }, () => ["exists", "f"]);
    await assert.rejects(c.batch(many), { code: "ERR_INVALID_ARG_VALUE", message: /131072/ });
    assert.deepEqual(await c.batch([]), []);
  });

  it("gives an escape as an EscapeError (EXDEV) in its slot, and does nothing outside", async () => {
    await fsp.mkdir(join(d.outside, "dir"), { recursive: true });
    await fsp.writeFile(join(d.outside, "sentinel"), "keep");
    await c.mkdir("esc");
    await c.symlink(d.outside, "esc/out");
    const before = fs.readdirSync(d.outside).sort();
    const paths = ["esc/out/sentinel", "../outside/sentinel", "/etc/passwd", "esc/out/dir/new", "esc/../../x"];
    const calls = paths.flatMap((p) => [["stat", p], ["readFile", p], ["writeFile", p, "x"], ["mkdir", p],
      ["unlink", p], ["rm", p, { recursive: true, force: true }], ["rename", "esc/nope", p], ["cp", p, "esc/copy"],
      ["realpath", p], ["exists", p], ["readdir", p, { withFileTypes: true }], ["chmod", p, 0o777],
      ["truncate", p, 0], ["lutimes", p, 1, 1]]);
    calls.push(["stat", "esc"]);
    const got = await c.batch(calls);
    for (let i = 0; i < calls.length - 1; i++) {
      const e = got[i];
      assert.ok(e instanceof EscapeError, `${JSON.stringify(calls[i])}: ${e}`);
      assert.equal(e.code, "EXDEV");
      assert.equal(e.errno, -18);
      assert.match(e.message, /escapes the root/);
      assert.ok(!e.message.includes(d.root), e.message);
      const p = calls[i][0] === "rename" ? calls[i][2] : calls[i][1];
      assert.ok(e.path === p || e.dest === p, `${JSON.stringify(calls[i])}: ${e.message}`);
    }
    assert.ok(got.at(-1).isDirectory());
    assert.deepEqual(fs.readdirSync(d.outside).sort(), before);
    assert.equal(fs.readFileSync(join(d.outside, "sentinel"), "utf8"), "keep");
    assert.deepEqual(fs.readdirSync(join(d.outside, "dir")), []);
  });

  it("sends 2000 calls as one request, in order", async () => {
    const N = 2000;
    await c.mkdir("many");
    let r = await sends(() => c.batch(Array.from({ length: N }, (_, i) => ["writeFile", `many/${i}`, `v${i}`])));
    assert.equal(r.sends, 1);
    assert.equal(r.value.length, N);
    assert.ok(r.value.every((x) => x === undefined));
    const calls = [];
    for (let i = 0; i < N; i++) {
      if (i % 4 === 0) calls.push(["readFile", i % 100 === 0 ? `many/missing${i}` : `many/${i}`, "utf8"]);
      else if (i % 4 === 1) calls.push(["stat", `many/${i}`]);
      else if (i % 4 === 2) calls.push(["exists", `many/${i}`]);
      else calls.push(["rename", `many/${i}`, `many/r${i}`]);
    }
    r = await sends(() => c.batch(calls));
    assert.equal(r.sends, 1);
    const got = r.value;
    assert.equal(got.length, N);
    for (let i = 0; i < N; i++) {
      const v = got[i];
      if (i % 4 === 0) {
        if (i % 100 === 0) {
          assert.equal(v.code, "ENOENT");
          assert.equal(v.path, `many/missing${i}`);
        } else {
          assert.equal(v, `v${i}`);
        }
      } else if (i % 4 === 1) {
        assert.equal(v.size, `v${i}`.length);
      } else if (i % 4 === 2) {
        assert.equal(v, true);
      } else {
        assert.equal(v, undefined);
      }
    }
    const names = await c.readdir("many");
    assert.equal(names.length, N);
    assert.equal(names.filter((n) => n.startsWith("r")).length, N / 4);
  });

  it("puts a result too big for the reply in its slot as EFBIG", async () => {
    const big = Buffer.alloc(65 << 20, 0x61);
    await c.writeFile("big", big);
    const got = await c.batch([["readFile", "big"], ["stat", "big"], ["readFile", "f", "utf8"]]);
    assert.equal(got[0].code, "EFBIG");
    assert.equal(got[0].path, "big");
    assert.match(got[0].message, /^EFBIG: result of \d+ bytes does not fit the batch's reply .*, open 'big'$/);
    assert.equal(got[1].size, big.length);
    assert.equal(got[2], "hello");
    await c.unlink("big");
  });

  it("is cancelled by its signal or timeout, as other calls", async () => {
    await assert.rejects(c.batch([["writeFile", "cancelled", "x"]], { signal: AbortSignal.abort() }),
                         { name: "AbortError" });
    assert.equal(await c.exists("cancelled"), false);
    const calls = Array.from({ length: 60000 }, (_, i) => ["exists", `nope${i}`]);
    await assert.rejects(c.batch(calls, { timeout: 1 }), (e) => {
      assert.equal(e.code, "ETIMEDOUT");
      assert.equal(e.syscall, "batch");
      return true;
    });
    const ac = new AbortController();
    const p = c.batch(calls, { signal: ac.signal });
    setTimeout(() => ac.abort(), 1);
    await assert.rejects(p, { name: "AbortError" });
    // the connection goes on
    const got = await c.batch([["exists", "f"], ["readFile", "f", "utf8"]]);
    assert.deepEqual(got, [true, "hello"]);
  });
});
