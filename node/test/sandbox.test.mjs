// The CoCalc-shaped facade (src/sandbox.ts) against a real daemon.
// Run: npx tsc -p tsconfig.json && node --test test/sandbox.test.mjs
//
// Everything is created through the facade (so the daemon's user owns it) except the
// escape fixtures, which the test process makes itself: a symlink in the root pointing at
// the `outside` directory, and a sentinel file there (and the 3000 empty files that make a
// watch overflow, written here at once). No assertion depends on timing.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";

import { startDaemon } from "./daemon.mjs";
import { connect, Stats, Dirent } from "../dist/index.js";
import { SandboxedFilesystem, sandboxedFilesystem, listingEntries } from "../dist/sandbox.js";

let d;
let client;
let sfs;

before(async () => {
  d = await startDaemon();
  client = await connect(d.socket);
  sfs = new SandboxedFilesystem(client, { allowSafeModeSymlink: true, allowSafeModeHardlink: true });
});

after(async () => {
  await client?.close();
  await d?.stop();
});

/** Each test works in its own directory, made through the facade. */
async function dir(name) {
  await sfs.mkdir(name);
  return name;
}

const code = (c) => (e) => { assert.equal(e.code, c, `${e.code}: ${e.message}`); return true; };

describe("metadata", () => {
  test("stat, lstat, exists, readlink, realpath (CoCalc's relative forms)", async () => {
    const t = await dir("meta");
    await sfs.writeFile(`${t}/f.txt`, "hello");
    await sfs.symlink(`${t}/f.txt`, `${t}/ln`);
    const st = await sfs.stat(`${t}/ln`);
    assert.ok(st instanceof Stats);
    assert.ok(st.isFile());
    assert.equal(st.size, 5);
    assert.ok((await sfs.lstat(`${t}/ln`)).isSymbolicLink());
    assert.equal(await sfs.exists(`${t}/f.txt`), true);
    assert.equal(await sfs.exists(`${t}/nope`), false);
    // symlink's target is a sandbox path; it is stored relative to the link's directory
    assert.equal(await sfs.readlink(`${t}/ln`), "f.txt");
    assert.equal(await sfs.realpath(`${t}/ln`), `${t}/f.txt`);
    assert.equal(await sfs.realpath("/"), "");
    assert.equal(await sfs.realpath("."), "");
    assert.equal(await sfs.realpath(`/root/${t}/ln`), `/root/${t}/f.txt`);
    assert.equal(await sfs.realpath("/root"), "/root");
    const c = await sfs.constants();
    assert.equal(c.O_RDONLY, fs.constants.O_RDONLY);
    assert.equal(c.S_IFMT, fs.constants.S_IFMT);
  });

  test("readdir: names, Dirents", async () => {
    const t = await dir("rd");
    await sfs.writeFile(`${t}/a`, "1");
    await sfs.mkdir(`${t}/sub`);
    assert.deepEqual((await sfs.readdir(t)).sort(), ["a", "sub"]);
    const ents = await sfs.readdir(`/${t}`, { withFileTypes: true });
    assert.ok(ents.every((e) => e instanceof Dirent));
    const byName = Object.fromEntries(ents.map((e) => [e.name, e]));
    assert.ok(byName.a.isFile());
    assert.ok(byName.sub.isDirectory());
    assert.equal(byName.a.parentPath, t); // the sandbox-relative path, never the host's
    assert.deepEqual((await sfs.readdir(t, { recursive: true })).sort(), ["a", "sub"]);
  });

  test("getListing: CoCalc's {files, truncated} with mtime in ms", async () => {
    const t = await dir("gl");
    await sfs.writeFile(`${t}/file.txt`, "12345");
    await sfs.mkdir(`${t}/sub`);
    await sfs.symlink(`${t}/file.txt`, `${t}/link`);
    await sfs.utimes(`${t}/file.txt`, 1_600_000_000, 1_700_000_000.5); // seconds, as Node's
    const { files, truncated } = await sfs.getListing(t);
    assert.equal(truncated, false);
    assert.deepEqual(Object.keys(files).sort(), ["file.txt", "link", "sub"]);
    assert.deepEqual(files["file.txt"], { mtime: 1_700_000_000_500, size: 5, type: "f" });
    const sub = files.sub;
    assert.equal(sub.type, "d");
    assert.equal(sub.isDir, true);
    assert.equal(sub.isSymLink, undefined);
    assert.equal(sub.mtime, (await sfs.lstat(`${t}/sub`)).mtimeMs);
    assert.equal(typeof sub.size, "number");
    const link = files.link;
    assert.deepEqual(Object.keys(link).sort(), ["isSymLink", "linkTarget", "mtime", "size", "type"]);
    assert.equal(link.type, "l");
    assert.equal(link.isSymLink, true);
    assert.equal(link.linkTarget, "file.txt");
    assert.equal(link.size, "file.txt".length); // lstat, not the target's
    assert.equal(link.mtime, (await sfs.lstat(`${t}/link`)).mtimeMs);
    // a millisecond time, not seconds: far beyond any seconds-since-epoch value
    assert.ok(link.mtime > 1e12);
    // the same listing from the absolute form, and as named entries
    assert.deepEqual((await sfs.getListing(`/${t}`)).files, files);
    const entries = listingEntries(files);
    assert.deepEqual(entries.find((e) => e.name === "file.txt"), { name: "file.txt", ...files["file.txt"] });
    // the root itself
    assert.ok("gl" in (await sfs.getListing("/")).files);
    assert.ok("gl" in (await sfs.getListing("")).files);
  });
});

describe("contents", () => {
  test("writeFile, readFile (encodings), appendFile, truncate, writeFileDelta", async () => {
    const t = await dir("io");
    await sfs.writeFile(`${t}/a.txt`, "hello");
    assert.equal(await sfs.readFile(`${t}/a.txt`, "utf8"), "hello");
    const buf = await sfs.readFile(`${t}/a.txt`);
    assert.ok(Buffer.isBuffer(buf));
    assert.equal(buf.toString(), "hello");
    await sfs.writeFile(`${t}/b.bin`, Buffer.from([0, 1, 2, 255]));
    assert.deepEqual([...(await sfs.readFile(`${t}/b.bin`))], [0, 1, 2, 255]);
    await sfs.appendFile(`${t}/a.txt`, " world");
    await sfs.appendFile(`${t}/new.txt`, "aGk=", "base64"); // created if missing
    assert.equal(await sfs.readFile(`${t}/a.txt`, "utf8"), "hello world");
    assert.equal(await sfs.readFile(`${t}/new.txt`, "utf8"), "hi");
    await sfs.truncate(`${t}/a.txt`, 4);
    assert.equal(await sfs.readFile(`${t}/a.txt`, "utf8"), "hell");
    await sfs.truncate(`${t}/a.txt`); // len = 0
    assert.equal((await sfs.stat(`${t}/a.txt`)).size, 0);
    await sfs.writeFileDelta(`${t}/a.txt`, "x".repeat(2000), { baseContents: "", minLength: 10 });
    assert.equal(await sfs.readFile(`${t}/a.txt`, "utf8"), "x".repeat(2000));
    await assert.rejects(sfs.writeFile(`${t}/a.txt`, { patch: "[]", sha256: "0" }), code("ENOSYS"));
    assert.equal(await sfs.readFile(`${t}/a.txt`, "utf8"), "x".repeat(2000));
  });

  test("writeFile is an atomic replace: an existing file keeps its mode", async () => {
    const t = await dir("atomic");
    await sfs.writeFile(`${t}/m`, "one");
    await sfs.chmod(`${t}/m`, "600");
    const ino = (await sfs.stat(`${t}/m`)).ino;
    await sfs.writeFile(`${t}/m`, "two");
    const st = await sfs.stat(`${t}/m`);
    assert.equal(st.mode & 0o777, 0o600);
    assert.notEqual(st.ino, ino); // a new inode took the name (CoCalc rewrites in place)
    assert.equal(await sfs.readFile(`${t}/m`, "utf8"), "two");
  });

  test("readFile lock and lockFile (CoCalc's LOCK)", async () => {
    const t = await dir("lock");
    await sfs.writeFile(`${t}/f`, "data");
    assert.equal(await sfs.readFile(`${t}/f`, "utf8", 60_000), "data");
    await assert.rejects(sfs.readFile(`/${t}/f`, "utf8"), code("LOCK")); // same file, absolute form
    await sfs.lockFile(`${t}/f`); // no lock given: unlock
    assert.equal(await sfs.readFile(`${t}/f`, "utf8"), "data");
    await sfs.lockFile(`${t}/f`, 60_000);
    await assert.rejects(sfs.readFile(`${t}/f`), code("LOCK"));
    await sfs.lockFile(`${t}/f`, 0);
    assert.equal(await sfs.readFile(`${t}/f`, "utf8"), "data");
  });
});

describe("namespace", () => {
  test("mkdir with octal-string and numeric modes, recursive", async () => {
    const t = await dir("mk");
    assert.equal(await sfs.mkdir(`${t}/a`, "750"), undefined);
    assert.equal((await sfs.stat(`${t}/a`)).mode & 0o777, 0o750);
    await sfs.mkdir(`${t}/b/c/d`, { recursive: true, mode: "0o700" });
    assert.equal((await sfs.stat(`${t}/b/c/d`)).mode & 0o777, 0o700);
    await sfs.mkdir(`${t}/e`, { mode: 0o755 });
    assert.equal((await sfs.stat(`${t}/e`)).mode & 0o777, 0o755);
    await sfs.mkdir(`${t}/b`, { recursive: true }); // exists: fine
    await assert.rejects(sfs.mkdir(`${t}/a`), code("EEXIST"));
    await assert.rejects(sfs.mkdir(`${t}/x/y`), code("ENOENT"));
  });

  test("unlink, rmdir (and recursive), rm of one path and of an array", async () => {
    const t = await dir("rm");
    for (const n of ["a", "b", "c"]) await sfs.writeFile(`${t}/${n}`, n);
    await sfs.mkdir(`${t}/d/e`, { recursive: true });
    await sfs.writeFile(`${t}/d/e/f`, "f");
    await sfs.unlink(`${t}/a`);
    assert.equal(await sfs.exists(`${t}/a`), false);
    await assert.rejects(sfs.rmdir(`${t}/d`), code("ENOTEMPTY"));
    await sfs.mkdir(`${t}/empty`);
    await sfs.rmdir(`${t}/empty`);
    assert.equal(await sfs.exists(`${t}/empty`), false);
    await sfs.rm([`${t}/b`, `/${t}/c`]);
    assert.deepEqual(await sfs.readdir(t), ["d"]);
    await assert.rejects(sfs.rm(`${t}/d`), code("ERR_FS_EISDIR")); // as fs.promises.rm says it
    await assert.rejects(sfs.rm([`${t}/missing`]), code("ENOENT"));
    await sfs.rm([`${t}/missing`, `${t}/missing2`], { force: true });
    await sfs.mkdir(`${t}/g/h`, { recursive: true });
    await sfs.rm([`${t}/d`, `${t}/g`], { recursive: true });
    assert.deepEqual(await sfs.readdir(t), []);
    await sfs.mkdir(`${t}/r/s`, { recursive: true });
    await sfs.rmdir(`${t}/r`, { recursive: true });
    assert.equal(await sfs.exists(`${t}/r`), false);
  });

  test("rename and move (overwrite, array into a directory)", async () => {
    const t = await dir("mv");
    await sfs.writeFile(`${t}/a`, "A");
    await sfs.writeFile(`${t}/b`, "B");
    await sfs.rename(`${t}/a`, `${t}/a2`);
    assert.equal(await sfs.readFile(`${t}/a2`, "utf8"), "A");
    await assert.rejects(sfs.move(`${t}/a2`, `${t}/b`), code("EEXIST")); // overwrite false by default
    assert.equal(await sfs.readFile(`${t}/b`, "utf8"), "B");
    await sfs.move(`${t}/a2`, `${t}/b`, { overwrite: true });
    assert.equal(await sfs.readFile(`${t}/b`, "utf8"), "A");
    assert.equal(await sfs.exists(`${t}/a2`), false);
    await sfs.mkdir(`${t}/into`);
    await sfs.writeFile(`${t}/c`, "C");
    await sfs.move([`${t}/b`, `/${t}/c`], `${t}/into`);
    assert.deepEqual((await sfs.readdir(`${t}/into`)).sort(), ["b", "c"]);
  });

  test("copyFile and cp: string and array forms, CoCalc's dest rules", async () => {
    const t = await dir("cp");
    await sfs.writeFile(`${t}/f`, "F");
    await sfs.chmod(`${t}/f`, 0o640);
    await sfs.mkdir(`${t}/tree/sub`, { recursive: true });
    await sfs.writeFile(`${t}/tree/sub/x`, "X");
    await sfs.copyFile(`${t}/f`, `${t}/f2`);
    assert.equal(await sfs.readFile(`${t}/f2`, "utf8"), "F");
    // string src: dest names the copy; its missing parent is created (CoCalc's convenience)
    await sfs.cp(`${t}/f`, `${t}/deep/er/f3`);
    assert.equal(await sfs.readFile(`${t}/deep/er/f3`, "utf8"), "F");
    assert.equal((await sfs.stat(`${t}/deep/er/f3`)).mode & 0o777, 0o640);
    await assert.rejects(sfs.cp(`${t}/tree`, `${t}/tree2`), code("EISDIR")); // a directory needs recursive
    await sfs.cp(`${t}/tree`, `${t}/tree2`, { recursive: true });
    assert.equal(await sfs.readFile(`${t}/tree2/sub/x`, "utf8"), "X");
    // force: false leaves an existing file; errorOnExist makes it EEXIST
    await sfs.writeFile(`${t}/f2`, "old");
    await sfs.cp(`${t}/f`, `${t}/f2`, { force: false });
    assert.equal(await sfs.readFile(`${t}/f2`, "utf8"), "old");
    await assert.rejects(sfs.cp(`${t}/f`, `${t}/f2`, { force: false, errorOnExist: true }), code("EEXIST"));
    await sfs.cp(`${t}/f`, `${t}/f2`);
    assert.equal(await sfs.readFile(`${t}/f2`, "utf8"), "F");
    // array src: copied INTO dest, each as dest/basename(src)
    await sfs.mkdir(`${t}/dst`);
    await sfs.cp([`${t}/f`, `/${t}/tree/`], `${t}/dst`, { recursive: true });
    assert.deepEqual((await sfs.readdir(`${t}/dst`)).sort(), ["f", "tree"]);
    assert.equal(await sfs.readFile(`${t}/dst/tree/sub/x`, "utf8"), "X");
    await assert.rejects(sfs.cp([`${t}/f`], `${t}/nodir`), code("ENOENT")); // the directory must exist
    await assert.rejects(sfs.cp(`${t}/f`, `${t}/f4`, { dereference: true }), code("ENOSYS"));
  });

  test("link and symlink (CoCalc's target is a sandbox path)", async () => {
    const t = await dir("ln");
    await sfs.writeFile(`${t}/f`, "F");
    await sfs.link(`${t}/f`, `${t}/hard`);
    assert.equal((await sfs.stat(`${t}/f`)).nlink, 2);
    await sfs.mkdir(`${t}/sub`);
    await sfs.symlink(`/${t}/f`, `${t}/sub/s`); // absolute target: the sandbox's, not the host's
    assert.equal(await sfs.readlink(`${t}/sub/s`), "../f");
    assert.equal(await sfs.readFile(`${t}/sub/s`, "utf8"), "F");
    await sfs.symlink(t, `${t}/sub/up`);
    assert.equal(await sfs.readlink(`${t}/sub/up`), "..");
  });

  test("chmod (number, octal string; follows an in-tree link) and utimes (Date, seconds)", async () => {
    const t = await dir("meta2");
    await sfs.writeFile(`${t}/f`, "F");
    await sfs.chmod(`${t}/f`, "0o600");
    assert.equal((await sfs.stat(`${t}/f`)).mode & 0o777, 0o600);
    await sfs.symlink(`${t}/f`, `${t}/l`);
    await sfs.chmod(`${t}/l`, 0o644);
    assert.equal((await sfs.stat(`${t}/f`)).mode & 0o777, 0o644);
    await sfs.utimes(`${t}/f`, new Date("2020-01-02T03:04:05.678Z"), new Date("2021-01-02T03:04:05.250Z"));
    let st = await sfs.stat(`${t}/f`);
    // a Date goes through seconds as a double (as in Node's own utimes): equal to the ms
    assert.equal(Math.round(st.atimeMs), Date.parse("2020-01-02T03:04:05.678Z"));
    assert.equal(Math.round(st.mtimeMs), Date.parse("2021-01-02T03:04:05.250Z"));
    await sfs.utimes(`/${t}/l`, 1000, "2000"); // seconds; through the link, as Node's utimes
    st = await sfs.stat(`${t}/f`);
    assert.equal(st.atimeMs, 1_000_000);
    assert.equal(st.mtimeMs, 2_000_000);
    // a directory: works once the client can send times; until then ENOSYS, nothing changed
    await sfs.mkdir(`${t}/d`);
    const before = (await sfs.stat(`${t}/d`)).mtimeMs;
    try {
      await sfs.utimes(`${t}/d`, 3000, 4000);
      assert.equal((await sfs.stat(`${t}/d`)).mtimeMs, 4_000_000);
    } catch (e) {
      assert.equal(e.code, "ENOSYS", e.message);
      assert.equal((await sfs.stat(`${t}/d`)).mtimeMs, before);
    }
  });
});

describe("paths", () => {
  test("absolute paths are relative to the sandbox root; /root is the home; .. stops at the root", async () => {
    await sfs.writeFile("/abs.txt", "top");
    assert.equal(await sfs.readFile("abs.txt", "utf8"), "top");
    assert.equal(await sfs.readFile("///abs.txt", "utf8"), "top");
    assert.equal(await sfs.readFile("/root/abs.txt", "utf8"), "top");
    assert.equal(await sfs.readFile("../../abs.txt", "utf8"), "top"); // CoCalc's lexical clamp
    await sfs.mkdir("/absdir/x", { recursive: true });
    assert.equal((await sfs.stat("absdir/x")).isDirectory(), true);
    assert.equal(fs.existsSync(path.join(d.root, "abs.txt")), true);
    assert.equal(fs.existsSync("/abs.txt"), false);
    assert.equal(fs.existsSync("/absdir"), false);
    await assert.rejects(sfs.readFile("/scratch/x"), code("ENOSYS"));
    await sfs.rm(["/abs.txt", "/root/absdir"], { recursive: true });
    assert.equal(fs.existsSync(path.join(d.root, "abs.txt")), false);
    assert.equal(fs.existsSync(path.join(d.root, "absdir")), false);
  });

  test("a symlink leading out is refused with EXDEV by every method; outside untouched", async () => {
    fs.writeFileSync(path.join(d.outside, "sentinel.txt"), "keep");
    fs.mkdirSync(path.join(d.outside, "sub"), { recursive: true });
    fs.symlinkSync(d.outside, path.join(d.root, "esc"));
    const snapshot = () => {
      const out = {};
      for (const n of fs.readdirSync(d.outside).sort()) {
        const p = path.join(d.outside, n);
        const st = fs.lstatSync(p);
        out[n] = [st.mode, st.size, st.mtimeMs, st.uid, st.nlink, st.isFile() ? fs.readFileSync(p, "utf8") : null];
      }
      return out;
    };
    const before = snapshot();
    await sfs.writeFile("ok.txt", "ok");
    await sfs.mkdir("okdir");
    const attempts = {
      readFile: () => sfs.readFile("esc/sentinel.txt"),
      readFileAbs: () => sfs.readFile("/esc/sentinel.txt"),
      writeFile: () => sfs.writeFile("esc/new.txt", "x"),
      writeFileOver: () => sfs.writeFile("/esc/sentinel.txt", "x"),
      appendFile: () => sfs.appendFile("esc/sentinel.txt", "x"),
      truncate: () => sfs.truncate("esc/sentinel.txt"),
      stat: () => sfs.stat("esc"),
      exists: () => sfs.exists("esc/sentinel.txt"),
      realpath: () => sfs.realpath("esc"),
      readdir: () => sfs.readdir("esc"),
      getListing: () => sfs.getListing("esc"),
      mkdir: () => sfs.mkdir("esc/newdir"),
      mkdirRec: () => sfs.mkdir("esc/a/b", { recursive: true }),
      rm: () => sfs.rm(["esc/sentinel.txt"], { force: true }),
      rmTree: () => sfs.rm("esc/sub", { recursive: true, force: true }),
      unlink: () => sfs.unlink("esc/sentinel.txt"),
      rmdir: () => sfs.rmdir("esc/sub"),
      rename: () => sfs.rename("ok.txt", "esc/ok.txt"),
      renameFrom: () => sfs.rename("esc/sentinel.txt", "stolen.txt"),
      move: () => sfs.move("ok.txt", "esc/ok.txt", { overwrite: true }),
      copyFile: () => sfs.copyFile("ok.txt", "esc/sentinel.txt"),
      copyFileFrom: () => sfs.copyFile("esc/sentinel.txt", "stolen.txt"),
      cp: () => sfs.cp("ok.txt", "esc/sub/ok.txt"),
      cpArray: () => sfs.cp(["ok.txt", "okdir"], "esc", { recursive: true }),
      cpFrom: () => sfs.cp("esc", "stolen", { recursive: true }),
      link: () => sfs.link("esc/sentinel.txt", "stolen.txt"),
      symlinkIn: () => sfs.symlink("ok.txt", "esc/l"),
      chmod: () => sfs.chmod("esc/sentinel.txt", 0o777),
      utimes: () => sfs.utimes("esc/sentinel.txt", 1, 1),
      watch: () => sfs.watch("esc"),
      watchFile: () => sfs.watch("/esc/sentinel.txt"),
    };
    for (const [name, f] of Object.entries(attempts)) {
      await assert.rejects(f(), (e) => {
        assert.equal(e.code, "EXDEV", `${name}: ${e.code} ${e.message}`);
        assert.ok(!e.message.includes(d.root), `${name}: the host root leaked: ${e.message}`);
        return true;
      }, name);
    }
    assert.equal(fs.existsSync(path.join(d.root, "stolen.txt")), false);
    assert.equal(fs.existsSync(path.join(d.root, "stolen")), false);
    // listed without being followed, like any link; removing it removes only the link
    const { files } = await sfs.getListing("/");
    assert.equal(files.esc.isSymLink, true);
    assert.equal(files.esc.linkTarget, d.outside);
    await sfs.rm("esc", { recursive: true, force: true });
    assert.equal(fs.existsSync(path.join(d.root, "esc")), false);
    assert.deepEqual(snapshot(), before);
    assert.equal(fs.readFileSync(path.join(d.outside, "sentinel.txt"), "utf8"), "keep");
  });
});

describe("watch", () => {
  /** Events of `w` until `done(events)` (10 s at most, then a failure naming what came). */
  async function collect(w, done) {
    const events = [];
    const deadline = Date.now() + 10_000;
    while (!done(events)) {
      let timer;
      const r = await Promise.race([w.next(), new Promise((res) => {
        timer = setTimeout(res, Math.max(deadline - Date.now(), 0), "late");
      })]);
      clearTimeout(timer);
      if (r === "late" || r.done) assert.fail(`${r === "late" ? "late" : "ended"}: ${JSON.stringify(events)}`);
      events.push(r.value);
    }
    return events;
  }
  const has = (event, filename) => (evs) => evs.some((e) => e.event === event && e.filename === filename);

  test("CoCalc's events for a directory's entries (depth 0), with stats", async () => {
    await dir("wat");
    await sfs.mkdir("wat/sub");
    const w = await sfs.watch("/wat", { stats: true });
    await sfs.writeFile("wat/a.txt", "a");
    const added = await collect(w, has("add", "a.txt"));
    const a = added.find((e) => e.event === "add" && e.filename === "a.txt");
    assert.ok(a.stats instanceof Stats && a.stats.isFile() && a.stats.size === 1);
    await sfs.mkdir("wat/d");
    const dirs = await collect(w, has("addDir", "d"));
    assert.equal(dirs.at(-1).stats.isDirectory(), true);
    await sfs.writeFile("wat/sub/deep.txt", "below"); // not reported: depth 0
    await sfs.appendFile("wat/a.txt", "more");
    const changed = await collect(w, has("change", "a.txt"));
    assert.equal(changed.at(-1).stats.size, 5);
    await sfs.unlink("wat/a.txt");
    await sfs.rmdir("wat/d");
    const gone = await collect(w, (evs) => has("unlink", "a.txt")(evs) && has("unlinkDir", "d")(evs));
    assert.equal(gone.find((e) => e.event === "unlink").stats, undefined);
    const all = [...added, ...dirs, ...changed, ...gone];
    assert.ok(!all.some((e) => e.filename.includes("/")), JSON.stringify(all));
    assert.ok(all.every((e) => ["add", "addDir", "change", "unlink", "unlinkDir"].includes(e.event)));
    w.close();
    assert.equal(w.ended, true);
    assert.deepEqual(await w.next(), { done: true, value: undefined });
  });

  test("a file: an atomic save is a change of \"\"; closeOnUnlink ends after the unlink", async () => {
    await dir("watf");
    await sfs.writeFile("watf/f.txt", "1");
    const w = await sfs.watch("watf/f.txt", { closeOnUnlink: true });
    const plain = await sfs.watch("watf/f.txt"); // without closeOnUnlink: the name is followed
    await sfs.writeFile("watf/f.txt", "2");
    await collect(w, has("change", ""));
    await sfs.unlink("watf/f.txt");
    await collect(w, has("unlink", ""));
    assert.deepEqual(await w.next(), { done: true, value: undefined });
    assert.equal(w.ended, true);
    await collect(plain, has("unlink", ""));
    await sfs.writeFile("watf/f.txt", "3");
    await collect(plain, (evs) => evs.some((e) => (e.event === "add" || e.event === "change") && e.filename === ""));
    plain.end();
  });

  test("signal ends the iteration (done, as CoCalc's); overflow 'throw'; setup errors reject", async () => {
    await dir("wats");
    const ac = new AbortController();
    const w = await sfs.watch("wats", { signal: ac.signal });
    const waiting = w.next();
    ac.abort();
    assert.deepEqual(await waiting, { done: true, value: undefined });
    assert.equal(w.ended, true);
    const pre = await sfs.watch("wats", { signal: AbortSignal.abort() });
    assert.deepEqual(await pre.next(), { done: true, value: undefined });
    // more than the daemon's queue of 1 while nobody reads (and more than the pages it sends ahead)
    const o = await sfs.watch("wats", { maxQueue: 1, overflow: "throw" });
    for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(d.root, "wats", `f${i}`), "");
    await assert.rejects(collect(o, () => false), /maxQueue overflow/);
    assert.equal(o.ended, true);
    await assert.rejects(sfs.watch("wats/nope"), code("ENOENT"));
    assert.equal((await sfs.stat("wats")).isDirectory(), true); // the connection serves on
  });
});

describe("policy, unsupported methods, construction", () => {
  test("readonly refuses every mutation before the daemon is asked", async () => {
    await sfs.writeFile("ro.txt", "ro");
    const ro = new SandboxedFilesystem(client, { readonly: true });
    assert.equal(await ro.readFile("ro.txt", "utf8"), "ro");
    for (const f of [
      () => ro.writeFile("ro.txt", "x"), () => ro.appendFile("ro.txt", "x"), () => ro.truncate("ro.txt"),
      () => ro.rm(["ro.txt"]), () => ro.unlink("ro.txt"), () => ro.mkdir("rodir"), () => ro.rmdir("okdir"),
      () => ro.rename("ro.txt", "ro2"), () => ro.move("ro.txt", "ro2"), () => ro.cp("ro.txt", "ro2"),
      () => ro.copyFile("ro.txt", "ro2"), () => ro.chmod("ro.txt", 0o600), () => ro.utimes("ro.txt", 1, 1),
      () => ro.symlink("ro.txt", "ro2"), () => ro.link("ro.txt", "ro2"), () => ro.writeFileDelta("ro.txt", "x"),
    ]) {
      await assert.rejects(f(), code("EACCES"));
    }
    assert.equal(await sfs.readFile("ro.txt", "utf8"), "ro");
    assert.equal(await sfs.exists("ro2"), false);
  });

  test("CoCalc's safe-mode link policy is kept unless allowed (or unsafeMode)", async () => {
    await sfs.writeFile("pol.txt", "p");
    const strict = new SandboxedFilesystem(client);
    await assert.rejects(strict.symlink("pol.txt", "pol-s"), code("EPERM"));
    await assert.rejects(strict.link("pol.txt", "pol-h"), code("EPERM"));
    const unsafe = new SandboxedFilesystem(client, { unsafeMode: true });
    await unsafe.symlink("pol.txt", "pol-s");
    assert.equal(await unsafe.readFile("pol-s", "utf8"), "p");
  });

  test("what beneathd cannot provide rejects with ENOSYS", async () => {
    for (const f of [
      () => sfs.syncFsWatch("pol.txt"), () => sfs.find("."), () => sfs.fd("."),
      () => sfs.ripgrep(".", "x"), () => sfs.dust("."), () => sfs.ouch(["list", "a.zip"]), () => sfs.rustic(["snapshots"]),
    ]) {
      await assert.rejects(f(), (e) => {
        assert.equal(e.code, "ENOSYS");
        assert.match(e.message, /not provided by the beneathd facade/);
        return true;
      });
    }
    assert.throws(() => new SandboxedFilesystem(client, { rootfs: "/x" }), code("ENOSYS"));
    assert.throws(() => new SandboxedFilesystem(client, { scratch: "/x" }), code("ENOSYS"));
  });

  test("sandboxedFilesystem(socketPath) connects; methods work unbound", async () => {
    const s = await sandboxedFilesystem(d.socket, { allowSafeModeSymlink: true });
    try {
      const { writeFile, readFile } = s; // arrow properties, as CoCalc's
      await writeFile("/unbound.txt", "u");
      assert.equal(await readFile("unbound.txt", "utf8"), "u");
      assert.equal(s.readonly, false);
    } finally {
      await s.client.close();
    }
  });
});
