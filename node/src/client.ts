/**
 * The Node client: Node's `fs.promises` names and option shapes, each mapped onto the
 * daemon's methods (the generated table in `methods.ts` says how each travels), pipelined
 * over one connection: every call is a msgid in flight, replies are filed by msgid, so
 * one event loop can have many calls outstanding. An `AbortSignal` (every call's `signal`
 * option) or the client's `timeout` cancels the call in the daemon too.
 */
import * as fs from "node:fs";
import { Readable, Writable } from "node:stream";

import { type Event } from "./connection.js";
import { abortError, ConnectionLost, fromWire, invalidArg, systemError, type PathArg } from "./errors.js";
import { FileHandle } from "./filehandle.js";
import { METHODS, type MethodName, type MethodSpec } from "./methods.js";
import { closeFds, Transport } from "./transport.js";
import { BigIntStats, Dirent, echo, type Encoding, kindOfMode, Stats, toMode, toNs, toStats, wireBytes, wirePath } from "./types.js";
import { checkWatchOptions, Watcher, type WatchOptions } from "./watch.js";

/** Above this, `writeFile` writes into an atomic writer's fd instead of sending the bytes
 * in the request: two more round trips, but no copy through msgpack, frames and the
 * daemon, which runs a write above 64 KiB in a worker thread (the table's long limit;
 * bench_node, 1 MiB: 2.7x of fs.promises.writeFile in the request, 1.0-1.2x through the
 * fd). The Python clients use the same limit. */
export const BIG_WRITE = 64 << 10;

export interface Progress {
  /** entries copied or removed so far (the top-level one included) */
  entries: number;
  /** bytes of file data copied so far */
  bytes: number;
}

export interface CallOptions {
  /** cancels the call (in the daemon too); the promise rejects with an AbortError */
  signal?: AbortSignal;
  /** milliseconds for this call; overrides the client's `timeout` */
  timeout?: number;
}

export interface ProgressOptions extends CallOptions {
  /** called at most every 100 ms while the call runs, and once at the end with the totals */
  progress?: (p: Progress) => void;
}

export interface ConnectOptions {
  /** default per-call timeout in milliseconds (none by default); a call that takes longer
   * rejects with ETIMEDOUT and is cancelled in the daemon */
  timeout?: number;
}

interface Pending {
  spec: MethodSpec;
  syscall: string;
  paths: (PathArg | undefined)[];
  resolve: (r: { result: unknown; fds: number[] }) => void;
  reject: (e: Error) => void;
  onPartial?: (kind: string, data: unknown) => void;
  done: () => void;
}

interface Call {
  name: MethodName;
  args: Record<string, unknown>;
  syscall: string;
  paths: (PathArg | undefined)[];
  options?: Record<string, unknown>;
  onPartial?: (kind: string, data: unknown) => void;
  /** no timeout (a stream that runs until it is closed: `watch` times its setup itself) */
  untimed?: boolean;
}

const isBuf = (p: PathArg): boolean => typeof p !== "string";

function encodeArgs(spec: MethodSpec, args: Record<string, unknown>): unknown[] {
  const out: unknown[] = [];
  let last = -1;
  spec.params.forEach((p, i) => {
    const v = args[p.name];
    if (v !== undefined) last = i;
    out.push(v === undefined ? p.default : v);
  });
  return out.slice(0, last + 1);
}

/** A walk's top without trailing slashes ("a/" is "a", "./" is "."): the daemon joins
 * the names below it, and the client cuts them apart again by the top's length. */
function trimTop(b: Buffer): Buffer {
  let n = b.length;
  while (n > 1 && b[n - 1] === 0x2f) n--;
  return n === b.length ? b : b.subarray(0, n);
}

function toData(data: unknown, encoding: BufferEncoding | undefined, name = "data"): Buffer {
  if (typeof data === "string") return Buffer.from(data, encoding ?? "utf8");
  if (Buffer.isBuffer(data)) return data;
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw invalidArg(name, "of type string or an instance of Buffer, TypedArray, or DataView", data);
}

function optObj<T extends object>(o: T | string | undefined | null, key?: string): Partial<T> {
  if (o === undefined || o === null) return {};
  if (typeof o === "string") return (key !== undefined ? { [key]: o } : {}) as Partial<T>;
  if (typeof o !== "object") throw invalidArg("options", "of type object", o);
  return o;
}

/** Node's `open()` flags as the daemon's (Python) open modes. */
const FLAGS: Record<string, string> = {
  r: "rb", rs: "rb", sr: "rb", "r+": "r+b", "rs+": "r+b", "sr+": "r+b",
  w: "wb", "w+": "w+b", wx: "xb", xw: "xb", "wx+": "x+b", "xw+": "x+b",
  a: "ab", "a+": "a+b", as: "ab", sa: "ab", "as+": "a+b", "sa+": "a+b",
};

function openMode(flags: unknown): string {
  if (flags === undefined || flags === null) return "rb";
  if (typeof flags === "number") {
    const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND } = fs.constants;
    const acc = flags & 3; // O_ACCMODE
    const plus = acc === O_RDWR ? "+" : "";
    if (flags & O_APPEND) return `a${plus}b`;
    if ((flags & O_CREAT) && (flags & O_EXCL)) return `x${plus}b`;
    if ((flags & O_CREAT) && (flags & O_TRUNC)) return `w${plus}b`;
    if (acc === O_RDONLY && !(flags & (O_CREAT | O_TRUNC))) return "rb";
    if (acc === O_RDWR && !(flags & (O_CREAT | O_TRUNC))) return "r+b";
    if (acc === O_WRONLY && !(flags & (O_CREAT | O_TRUNC))) return "r+b";
    throw invalidArg("flags", "must be a combination the daemon can open (r, r+, w, w+, wx, a, a+)", flags, true);
  }
  if (typeof flags !== "string") throw invalidArg("flags", "of type string or number", flags);
  const m = FLAGS[flags];
  if (m === undefined) throw invalidArg("flags", "is invalid", flags, true);
  return m;
}

/** A directory's names (a listdir reply) in the caller's type. */
function toNames(r: unknown, conv: (b: Uint8Array) => string | Buffer): (string | Buffer)[] {
  if (!Array.isArray(r)) throw new TypeError("beneathd: malformed readdir reply");
  return r.map((n) => conv(wireBytes(n)));
}

/** A scandir reply (entries with their link texts) as Dirents under `parentPath`. */
function toDirents(r: unknown, parentPath: string | Buffer, conv: (b: Uint8Array) => string | Buffer): Dirent[] {
  if (!Array.isArray(r)) throw new TypeError("beneathd: malformed readdir reply");
  return r.map((e: unknown) => {
    const [name, kind, , st, , target] = e as [Uint8Array, string, unknown, unknown, unknown, Uint8Array | null];
    return new Dirent(conv(name), parentPath, kind, target instanceof Uint8Array ? conv(target) : null,
                      Array.isArray(st) ? toStats(st) as Stats : null);
  });
}

const PACKED_STAT = 13 * 8;

/** The parts of a packed listing (PROTOCOL.md "Listings"): as sent, or read from the
 * memfd passed with a big one (the result is then the parts' sizes); the fd is closed. */
function packedParts(result: unknown, fds: number[]): Uint8Array[] | null {
  try {
    if (fds.length === 1 && Array.isArray(result) && result.length === 4 &&
        result.every((n) => (typeof n === "number" || typeof n === "bigint") && Number.isSafeInteger(Number(n)) &&
                            Number(n) >= 0)) {
      const sizes = result.map(Number);
      const st = fs.fstatSync(fds[0] as number);
      // a regular file (the daemon's memfd) exactly as long as the sizes say, or malformed
      if (!st.isFile() || st.size !== sizes.reduce((a, b) => a + b, 0)) {
        throw new TypeError("beneathd: malformed readdir reply (the listing fd does not match its sizes)");
      }
      const parts: Uint8Array[] = [];
      let off = 0;
      for (const n of sizes) {
        const b = Buffer.alloc(n);
        for (let got = 0; got < n;) {
          const k = fs.readSync(fds[0] as number, b, got, n - got, off + got);
          if (k === 0) throw new TypeError("beneathd: malformed readdir reply (short listing fd)");
          got += k;
        }
        parts.push(b);
        off += n;
      }
      return parts;
    }
    if (Array.isArray(result) && result.length === 4 && result.every((x) => x instanceof Uint8Array)) {
      return result as Uint8Array[];
    }
    return null;
  } finally {
    closeFds(fds);
  }
}

/** Split a NUL-terminated run of names. */
function splitNul(b: Uint8Array): Buffer[] {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const out: Buffer[] = [];
  let start = 0;
  for (let i = buf.indexOf(0, start); i !== -1; i = buf.indexOf(0, start)) {
    out.push(buf.subarray(start, i));
    start = i + 1;
  }
  if (start !== buf.length) throw new TypeError("beneathd: malformed readdir reply (a name without its NUL)");
  return out;
}

/** A packed scandir reply as Dirents under `parentPath`. */
function packedDirents(parts: Uint8Array[], parentPath: string | Buffer,
                       conv: (b: Uint8Array) => string | Buffer): Dirent[] {
  const [names, stats, links, targets] = parts as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  const nl = splitNul(names);
  const lk = splitNul(links);
  if (stats.byteLength !== nl.length * PACKED_STAT || targets.byteLength !== lk.length * PACKED_STAT) {
    throw new TypeError("beneathd: malformed readdir reply (counts differ)");
  }
  const view = new DataView(stats.buffer, stats.byteOffset, stats.byteLength);
  const out: Dirent[] = [];
  let j = 0;
  for (let i = 0; i < nl.length; i++) {
    const st: bigint[] = [];
    for (let k = 0; k < 13; k++) {  // ino, dev and rdev unsigned (as fs says them), the rest signed
      const at = i * PACKED_STAT + 8 * k;
      st.push(k === 1 || k === 2 || k === 12 ? view.getBigUint64(at, true) : view.getBigInt64(at, true));
    }
    const kind = kindOfMode(Number(st[0]));
    let target: string | Buffer | null = null;
    if (kind === "symlink") {
      if (j >= lk.length) throw new TypeError("beneathd: malformed readdir reply (more links than texts)");
      const text = lk[j] as Buffer;
      target = text.length ? conv(text) : null;
      j++;
    }
    out.push(new Dirent(conv(nl[i] as Buffer), parentPath, kind, target, toStats(st) as Stats));
  }
  if (j !== lk.length) throw new TypeError("beneathd: malformed readdir reply (fewer links than texts)");
  return out;
}

/** The ancestors of a recursive mkdir's path, and the path itself (asked whether each exists). */
function mkdirPrefixes(p: Buffer): Buffer[] {
  const parts = p.toString("latin1").split("/");
  return parts.map((_, i) => parts.slice(0, i + 1).join("/")).filter((x) => x !== "" && x !== ".")
    .map((x) => Buffer.from(x, "latin1"));
}

/** What a recursive mkdir returns: the first directory it made, in the caller's type. */
function firstMade(prefixes: Buffer[], there: unknown[], path: PathArg): string | Buffer | undefined {
  const first = prefixes[there.indexOf(false)];
  if (first === undefined) return undefined;
  return typeof path === "string" ? first.toString("utf8") : first;
}

/** `rm`'s errors as Node's: a missing path is ENOENT from lstat, a directory without
 * `recursive` the SystemError ERR_FS_EISDIR. */
function rmError(e: Error, path: PathArg, recursive: boolean): Error {
  const code = (e as { code?: string }).code;
  if (code === "ENOENT") return systemError("ENOENT", "lstat", path);
  if (code === "EISDIR" && !recursive) {
    const x = new Error(`Path is a directory: rm returned EISDIR (is a directory) ${String(path)}`) as Error &
      Record<string, unknown>;
    Object.assign(x, { code: "ERR_FS_EISDIR", errno: 21, syscall: "rm", path,
      info: { code: "EISDIR", message: "is a directory", path, syscall: "rm", errno: 21 } });
    x.name = "SystemError";
    return x;
  }
  return e;
}

// ---- batch -------------------------------------------------------------------------------

/** Daemon calls in one batch at most (PROTOCOL.md "Batch"). */
export const MAX_BATCH = 131072;

/** The Node client's methods a batch can hold (each call in the client's own vocabulary). */
export type BatchMethod = "stat" | "lstat" | "access" | "exists" | "readlink" | "realpath" | "readdir" | "du"
  | "mkdir" | "unlink" | "rmdir" | "rm" | "rename" | "move" | "exchange" | "cp" | "copyFile" | "link" | "symlink"
  | "chmod" | "chown" | "lutimes" | "truncate" | "readFile" | "writeFile";

/** One call of a batch: a method's name and the arguments that method takes
 * (`["mkdir", "a/b", { recursive: true }]`), without `signal`, `timeout` or `progress`. */
export type BatchCall = { [K in BatchMethod]: readonly [K, ...Parameters<Client[K]>] }[BatchMethod];

export interface BatchOptions extends CallOptions {
  /** the calls after the first that fails are not run (their slots are `undefined`) */
  stopOnError?: boolean;
}

/** One daemon call of a batched Node call, with what its error is named by. */
interface WireCall {
  name: MethodName;
  args: Record<string, unknown>;
  syscall: string;
  paths: (PathArg | undefined)[];
}

/** A Node call as the daemon calls it is made of, sent one after the other in the batch.
 * Its outcome is the first of them to fail (through `failed`, which may turn that error
 * into another, or into a value), else `done` of all their results. */
interface Plan {
  wire: WireCall[];
  done: (results: unknown[]) => unknown;
  failed?: (e: Error) => Error | { value: unknown };
  /** why the outcome can fail here after the daemon succeeded (refused with stopOnError:
   * the daemon could not stop at it) */
  decidedHere?: string;
}

/** A call a batch cannot hold: the batch is refused before anything is sent. */
class NotBatchable extends Error {}

function batchRefusal(i: number, call: readonly unknown[], why: string): TypeError {
  const name = typeof call[0] === "string" ? call[0] : String(call[0]);
  const e = new TypeError(`The argument 'calls[${i}]' cannot be batched: ${why}. Received ['${name}', ...]`);
  (e as TypeError & { code: string }).code = "ERR_INVALID_ARG_VALUE";
  return e;
}

/** Methods of the client that cannot go in a batch, and why. */
const NOT_BATCHABLE: Record<string, string> = {
  open: "open passes an fd, which a batch reply cannot carry (call open() alone)",
  openAtomic: "openAtomic passes an fd, which a batch reply cannot carry (call openAtomic() alone)",
  createReadStream: "a stream reads through an fd the daemon passes (call createReadStream() alone)",
  createWriteStream: "a stream writes through an atomic writer's fd (call createWriteStream() alone)",
  appendFile: "appendFile writes through an fd the daemon opens (call appendFile() alone)",
  watch: "watch streams its events (call watch() alone)",
  walk: "walk streams its results (call walk() alone)",
  batch: "a batch cannot hold a batch",
  stats: "the daemon's counters are no call on the tree (call stats() alone)",
  utimes: "utimes follows a final symlink by resolving it first, which a batch cannot do between its calls "
    + "(use lutimes, a path's own times, or call utimes() alone)",
  close: "close is not a file operation",
};

const one = (w: WireCall, done: (r: unknown) => unknown = () => undefined): Plan => ({
  wire: [w], done: (rs) => done(rs[0]),
});

const opts = (o: unknown): Record<string, unknown> =>
  (typeof o === "object" && o !== null ? o : {}) as Record<string, unknown>;

const asPath = (p: unknown): PathArg => p as PathArg;

/** Each batchable method: its arguments (as that method takes them) as daemon calls, mapped
 * as the method itself maps them, checked as it checks them (a bad argument is that call's
 * error, in its slot). Where the method takes a look first and then decides (a second round
 * trip), a batch cannot: see the README ("Batch"). */
const PLANNERS: Record<BatchMethod, (...a: unknown[]) => Plan> = {
  stat: (path, options) => {
    const bigint = opts(options).bigint === true;
    return one({ name: "stat", args: { path: wirePath(path), follow_symlinks: true }, syscall: "stat",
      paths: [asPath(path)] }, (r) => toStats(r, bigint));
  },
  lstat: (path, options) => {
    const bigint = opts(options).bigint === true;
    return one({ name: "lstat", args: { path: wirePath(path) }, syscall: "lstat", paths: [asPath(path)] },
               (r) => toStats(r, bigint));
  },
  access: (path, mode = fs.constants.F_OK) => {
    if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 7) {
      throw invalidArg("mode", "must be an integer >= 0 && <= 7", mode, true);
    }
    const want = ((mode & fs.constants.R_OK) ? 0o400 : 0) | ((mode & fs.constants.W_OK) ? 0o200 : 0)
      | ((mode & fs.constants.X_OK) ? 0o100 : 0);
    const plan = one({ name: "stat", args: { path: wirePath(path), follow_symlinks: true }, syscall: "access",
      paths: [asPath(path)] }, (r) => {
      if (((toStats(r) as Stats).mode & want) !== want) throw systemError("EACCES", "access", asPath(path));
      return undefined;
    });
    if (want !== 0) plan.decidedHere = "access() with R_OK, W_OK or X_OK judges the permission bits here";
    return plan;
  },
  exists: (path) => one({ name: "exists", args: { path: wirePath(path) }, syscall: "stat", paths: [asPath(path)] },
                        (r) => r === true),
  readlink: (path, options) => {
    const o = optObj(options as object | string | undefined, "encoding") as { encoding?: Encoding };
    return one({ name: "readlink", args: { path: wirePath(path) }, syscall: "readlink", paths: [asPath(path)] },
               (r) => echo(wireBytes(r), isBuf(asPath(path)), o.encoding));
  },
  // strict as the method: a `stat` before the realpath fails for a missing path (ENOENT,
  // ENOTDIR, ELOOP, as realpath(3) would), the daemon's failure (it stops a stopOnError batch)
  realpath: (path, options) => {
    const o = optObj(options as object | string | undefined, "encoding") as { encoding?: Encoding };
    const p = wirePath(path);
    return {
      wire: [{ name: "stat", args: { path: p, follow_symlinks: true }, syscall: "realpath", paths: [asPath(path)] },
             { name: "realpath", args: { path: p }, syscall: "realpath", paths: [asPath(path)] }],
      done: (rs) => echo(wireBytes(rs[1]), isBuf(asPath(path)), o.encoding),
    };
  },
  readdir: (path, options) => {
    const o = optObj(options as object | string | undefined, "encoding") as { withFileTypes?: boolean;
      recursive?: boolean; encoding?: Encoding };
    if (o.recursive === true) throw new NotBatchable("a recursive readdir is a streamed walk (call readdir() alone)");
    const asBuf = isBuf(asPath(path)) || o.encoding === "buffer";
    const conv = (b: Uint8Array): string | Buffer => echo(b, asBuf, o.encoding);
    const p = wirePath(path);
    if (o.withFileTypes !== true) {
      return one({ name: "listdir", args: { path: p }, syscall: "scandir", paths: [asPath(path)] },
                 (r) => toNames(r, conv));
    }
    // a batched scandir's entries always carry their link texts
    const parent = typeof path === "string" ? path : Buffer.from(p);
    return one({ name: "scandir", args: { path: p }, syscall: "scandir", paths: [asPath(path)] },
               (r) => toDirents(r, parent, conv));
  },
  du: (path = ".") => one({ name: "du", args: { path: wirePath(path) }, syscall: "du", paths: [asPath(path)] }, (r) => {
    if (!Array.isArray(r) || r.length !== 2) throw new TypeError("beneathd: malformed du reply");
    return { bytes: Number(r[0]), entries: Number(r[1]) };
  }),
  mkdir: (path, options) => {
    const o = typeof options === "number" || typeof options === "string" ? { mode: options } : opts(options);
    const mode = toMode(o.mode, "mode", 0o777);
    const p = wirePath(path);
    if (o.recursive !== true) return one({ name: "mkdir", args: { path: p, mode }, syscall: "mkdir", paths: [asPath(path)] });
    const prefixes = mkdirPrefixes(p);
    return {
      wire: [...prefixes.map((x): WireCall => ({ name: "exists", args: { path: x }, syscall: "stat", paths: [x] })),
             { name: "mkdir", args: { path: p, mode, parents: true, exist_ok: true }, syscall: "mkdir",
               paths: [asPath(path)] }],
      done: (rs) => firstMade(prefixes, rs.slice(0, prefixes.length), asPath(path)),
    };
  },
  unlink: (path) => one({ name: "unlink", args: { path: wirePath(path) }, syscall: "unlink", paths: [asPath(path)] }),
  rmdir: (path) => one({ name: "rmdir", args: { path: wirePath(path) }, syscall: "rmdir", paths: [asPath(path)] }),
  rm: (path, options) => {
    const o = opts(options);
    const recursive = o.recursive === true;
    return { ...one({ name: "rm", args: { path: wirePath(path), recursive, force: o.force === true }, syscall: "rm",
      paths: [asPath(path)] }), failed: (e) => rmError(e, asPath(path), recursive) };
  },
  rename: (oldPath, newPath) => one({ name: "rename", args: { src: wirePath(oldPath, "oldPath"),
    dst: wirePath(newPath, "newPath") }, syscall: "rename", paths: [asPath(oldPath), asPath(newPath)] }),
  move: (src, dest, options) => one({ name: "move", args: { src: wirePath(src, "src"), dst: wirePath(dest, "dest"),
    overwrite: opts(options).overwrite === true }, syscall: "rename", paths: [asPath(src), asPath(dest)] }),
  exchange: (a, b) => one({ name: "exchange", args: { a: wirePath(a, "a"), b: wirePath(b, "b") }, syscall: "rename",
    paths: [asPath(a), asPath(b)] }),
  // `force: false` without `errorOnExist` skips an existing file: the method looks first,
  // here the copy refuses to replace it (EEXIST) and that is the skip
  cp: (src, dest, options) => {
    const o = opts(options);
    const force = (o.force ?? true) as boolean;
    const skip = !force && o.errorOnExist !== true && o.recursive !== true;
    const plan = one({ name: "cp", args: { src: wirePath(src, "src"), dst: wirePath(dest, "dest"),
      recursive: o.recursive === true, overwrite: force, preserve: o.preserveTimestamps === true }, syscall: "cp",
    paths: [asPath(src), asPath(dest)] });
    if (!skip) return plan;
    return { ...plan, failed: (e) => (e as { code?: string }).code === "EEXIST" ? { value: undefined } : e,
      decidedHere: "cp() with force: false and no errorOnExist skips an existing file, which the daemon sees as "
        + "a failure (give errorOnExist: true, or leave stopOnError off)" };
  },
  copyFile: (src, dest, mode = 0) => {
    if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 7) {
      throw invalidArg("mode", "must be an integer >= 0 && <= 7", mode, true);
    }
    const { COPYFILE_EXCL, COPYFILE_FICLONE_FORCE } = fs.constants;
    return one({ name: "copy_file", args: { src: wirePath(src, "src"), dst: wirePath(dest, "dest"),
      overwrite: (mode & COPYFILE_EXCL) === 0, reflink: (mode & COPYFILE_FICLONE_FORCE) ? "always" : "auto" },
    syscall: "copyfile", paths: [asPath(src), asPath(dest)] });
  },
  link: (existingPath, newPath) => one({ name: "link", args: { src: wirePath(existingPath, "existingPath"),
    dst: wirePath(newPath, "newPath") }, syscall: "link", paths: [asPath(existingPath), asPath(newPath)] }),
  symlink: (target, path) => one({ name: "symlink", args: { target: wirePath(target, "target"), path: wirePath(path) },
    syscall: "symlink", paths: [asPath(target), asPath(path)] }),
  // the daemon's chmod only: a final symlink is its slot's ENOTSUP/ELOOP, target untouched
  // (the method resolves the link and tries again, a second round trip)
  chmod: (path, mode) => {
    const p = wirePath(path);
    return one({ name: "chmod", args: { path: p, mode: toMode(mode, "mode") }, syscall: "chmod", paths: [asPath(path)] });
  },
  chown: (path, uid, gid) => {
    for (const [n, v] of [["uid", uid], ["gid", gid]] as const) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < -1 || v > 0xffffffff) {
        throw invalidArg(n, "must be an integer >= -1 && <= 4294967295", v, true);
      }
    }
    return one({ name: "chown", args: { path: wirePath(path), uid, gid }, syscall: "chown", paths: [asPath(path)] });
  },
  lutimes: (path, atime, mtime) => one({ name: "utime", args: { path: wirePath(path),
    ns: [toNs(atime, "atime"), toNs(mtime, "mtime")] }, syscall: "utime", paths: [asPath(path)] }),
  truncate: (path, len = 0) => {
    if (typeof len !== "number" || !Number.isInteger(len)) throw invalidArg("len", "of type number", len);
    return one({ name: "truncate", args: { path: wirePath(path), length: Math.max(0, len) }, syscall: "open",
      paths: [asPath(path)] });
  },
  // the daemon's read_file: the bytes come in the reply, so a file too big for it (64 MiB
  // less the rest of the reply) is its slot's EFBIG
  readFile: (path, options) => {
    const o = optObj(options as object | string | undefined, "encoding") as { encoding?: BufferEncoding | null;
      flag?: string };
    if (openMode(o.flag ?? "r") !== "rb") {
      throw new NotBatchable(`readFile() with flag '${String(o.flag)}' opens for writing too (call readFile() alone)`);
    }
    return { ...one({ name: "read_file", args: { path: wirePath(path) }, syscall: "open", paths: [asPath(path)] }, (r) => {
      const b = wireBytes(r);
      const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
      return o.encoding ? buf.toString(o.encoding) : buf;
    }), failed: (e) => (e as { code?: string }).code === "EISDIR" ? systemError("EISDIR", "read") : e };
  },
  // always the bytes in the request (the batch is one message of 64 MiB at most), atomic
  writeFile: (path, data, options) => {
    const o = optObj(options as object | string | undefined, "encoding") as { encoding?: BufferEncoding | null;
      mode?: number | string; flag?: string };
    const flag = o.flag ?? "w";
    if (typeof flag === "string" && flag.startsWith("a")) {
      throw new NotBatchable("writeFile() with flag 'a' appends through an fd (call writeFile() alone)");
    }
    if (typeof flag === "string" && flag.includes("x")) {
      throw new NotBatchable("writeFile() with flag 'x' writes through an atomic writer's fd (call writeFile() alone)");
    }
    const buf = toData(data, o.encoding ?? undefined);
    const mode = toMode(o.mode, "mode", 0o666);
    return one({ name: "write_file", args: { path: wirePath(path), data: buf, mode }, syscall: "open",
      paths: [asPath(path)] });
  },
};

/** `signal`, `timeout` and `progress` are the batch's (one request): a call giving its own is refused. */
function ownCallOptions(args: readonly unknown[]): string | undefined {
  for (const a of args) {
    if (typeof a !== "object" || a === null || ArrayBuffer.isView(a) || a instanceof Date) continue;
    for (const k of ["signal", "timeout", "progress"]) {
      if ((a as Record<string, unknown>)[k] !== undefined) {
        return `${k} cannot be given to a call inside a batch (give batch() its signal or timeout)`;
      }
    }
  }
  return undefined;
}

/** A Node call's outcome from its slots of the reply (`undefined` when it was not run). */
function settle(plan: Plan, slots: unknown[]): unknown {
  const results: unknown[] = [];
  for (let k = 0; k < plan.wire.length; k++) {
    const s = slots[k];
    if (s === null || s === undefined) return undefined; // not run (stopOnError)
    if (!Array.isArray(s) || s.length !== 2) throw new TypeError("beneathd: malformed batch reply");
    const [err, res] = s as [unknown, unknown];
    if (err !== null && err !== undefined) {
      const w = plan.wire[k]!;
      const m = err as { code?: unknown; paths?: unknown };
      // a result too big for the reply: the daemon names no path, the call's own is meant
      const named = m.code === "EFBIG" && Array.isArray(m.paths) && m.paths.length === 0 ? { ...m, paths: [0] } : err;
      const e = fromWire(named, w.syscall, w.paths);
      if (plan.failed === undefined) return e;
      const f = plan.failed(e);
      return f instanceof Error ? f : f.value;
    }
    results.push(res);
  }
  try {
    return plan.done(results);
  } catch (e) {
    return e;
  }
}

export class Client {
  /** the live connection, or null after a loss (the next call connects anew) */
  private transport: Transport | null = null;
  private readonly pending = new Map<number, Pending>();
  /** calls given up (aborted, timed out) whose reply may still come: an atomic writer
   * opened by one is discarded in the daemon when it does */
  private readonly abandoned = new Map<number, MethodName>();
  private closing = false;

  /** Use `connect()`. Connects at once (a missing socket is ENOENT here). */
  constructor(readonly socketPath: string, private readonly defaultTimeout?: number) {
    this.live();
  }

  // ---- the call machinery ------------------------------------------------------------

  /** The connection, made anew after a loss: calls in flight at a loss fail (never
   * re-sent: one might have been done), later calls go on a new connection. */
  private live(): Transport {
    if (this.transport === null) {
      const t: Transport = new Transport(this.socketPath, (ev) => this.dispatch(t, ev), (why) => this.onLost(t, why));
      this.transport = t;
      this.pending.clear();
      this.abandoned.clear();
    }
    return this.transport;
  }

  private dispatch(t: Transport, ev: Event): void {
    if (t !== this.transport) {
      closeFds(ev.fds);
      return;
    }
    if (ev.type === "refusal") {
      closeFds(ev.fds);
      this.fail(t, fromWire(ev.error, "connect", []));
      return;
    }
    const p = this.pending.get(ev.msgid);
    if (p === undefined) { // given up (aborted, timed out): nobody takes its fds
      closeFds(ev.fds);
      if (ev.type === "reply") this.late(ev.msgid, ev.error, ev.result);
      return;
    }
    if (ev.type === "partial") {
      closeFds(ev.fds);
      if (p.onPartial !== undefined) {
        try {
          p.onPartial(ev.kind, ev.data);
        } catch (e) {
          this.giveUp(ev.msgid, p, e as Error);
        }
      }
      return;
    }
    this.pending.delete(ev.msgid);
    p.done();
    t.hold(this.pending.size > 0);
    if (ev.error !== null && ev.error !== undefined) {
      closeFds(ev.fds);
      p.reject(fromWire(ev.error, p.syscall, p.paths));
    } else {
      p.resolve({ result: ev.result, fds: ev.fds });
    }
  }

  /** The reply of a call given up: an atomic writer it opened is discarded. */
  private late(msgid: number, error: unknown, result: unknown): void {
    const name = this.abandoned.get(msgid);
    this.abandoned.delete(msgid);
    if (name === "open" && (error === null || error === undefined) && typeof result === "number") {
      this.call({ name: "writer_discard", args: { handle: result }, syscall: "unlink", paths: [] })
        .catch(() => undefined);
    }
  }

  private onLost(t: Transport, why: string): void {
    this.fail(t, new ConnectionLost(this.socketPath, why));
  }

  private fail(t: Transport, e: Error): void {
    if (t !== this.transport) return;
    this.transport = null;
    t.close();
    const all = [...this.pending.values()];
    this.pending.clear();
    this.abandoned.clear();
    for (const p of all) {
      p.done();
      p.reject(e);
    }
  }

  /** Stop waiting for a call: tell the daemon to cancel it, reject with `e`. */
  private giveUp(msgid: number, p: Pending, e: Error): void {
    if (this.pending.get(msgid) !== p) return;
    this.pending.delete(msgid);
    this.abandoned.set(msgid, p.spec.name as MethodName);
    p.done();
    const t = this.transport;
    if (t !== null) {
      t.hold(this.pending.size > 0);
      t.send(t.conn.cancel(msgid));
    }
    p.reject(e);
  }

  /** One call: its result and any fds (the caller owns them). */
  call(c: Call & CallOptions): Promise<{ result: unknown; fds: number[] }> {
    return this.start(c).promise;
  }

  /** Send a call; its msgid (-1 if it was refused before being sent), the connection it
   * went on, and its outcome. */
  private start(c: Call & CallOptions): { msgid: number; transport: Transport | null;
    promise: Promise<{ result: unknown; fds: number[] }> } {
    const spec: MethodSpec = METHODS[c.name];
    let msgid = -1;
    let transport: Transport | null = null;
    const promise = new Promise<{ result: unknown; fds: number[] }>((resolve, reject) => {
      if (this.closing) return reject(new ConnectionLost(this.socketPath, "the client was closed"));
      const signal = c.signal;
      if (signal?.aborted) return reject(abortError(signal));
      let t: Transport;
      try {
        t = this.live();
      } catch (e) {
        return reject(e as Error);
      }
      const timeout = c.untimed === true ? undefined : c.timeout ?? this.defaultTimeout;
      let datagrams: Buffer[];
      const id = t.conn.msgid((i) => this.pending.has(i) || this.abandoned.has(i));
      try {
        datagrams = t.conn.request(id, spec.name, encodeArgs(spec, c.args), c.options);
      } catch (e) {
        return reject(e as Error);
      }
      msgid = id;
      transport = t;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => this.giveUp(id, p, abortError(signal!));
      const p: Pending = {
        spec, syscall: c.syscall, paths: c.paths, resolve, reject, onPartial: c.onPartial,
        done: () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        },
      };
      this.pending.set(id, p);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeout !== undefined) {
        timer = setTimeout(() => this.giveUp(id, p, systemError("ETIMEDOUT", c.syscall, c.paths[0], c.paths[1],
          `no answer within ${timeout} ms (cancelled in the daemon)`)), timeout);
      }
      t.hold(true);
      t.send(datagrams);
    });
    return { msgid, transport, promise };
  }

  private async simple(name: MethodName, syscall: string, args: Record<string, unknown>, paths: PathArg[],
                       o?: CallOptions): Promise<unknown> {
    const { result, fds } = await this.call({ name, args, syscall, paths, signal: o?.signal, timeout: o?.timeout });
    closeFds(fds);
    return result;
  }

  private async long(name: MethodName, syscall: string, args: Record<string, unknown>, paths: PathArg[],
                     o: ProgressOptions | undefined): Promise<unknown> {
    const progress = o?.progress;
    if (progress !== undefined && typeof progress !== "function") {
      throw invalidArg("options.progress", "of type function", progress);
    }
    const { result, fds } = await this.call({
      name, args, syscall, paths, signal: o?.signal, timeout: o?.timeout,
      options: progress !== undefined ? { progress: true } : undefined,
      onPartial: progress === undefined ? undefined : (kind, data) => {
        if (kind === "progress" && Array.isArray(data) && data.length === 2) {
          progress({ entries: Number(data[0]), bytes: Number(data[1]) });
        }
      },
    });
    closeFds(fds);
    return result;
  }

  /** Close the connection; calls in flight reject with ConnectionLost. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.transport !== null) this.fail(this.transport, new ConnectionLost(this.socketPath, "the client was closed"));
  }

  // ---- batch ---------------------------------------------------------------------------

  /**
   * Many calls in one request, run by the daemon in order: `calls` are the client's own
   * methods and arguments (`["stat", "a"]`, `["mkdir", "b", { recursive: true }]`), each
   * mapped onto the daemon's methods as that method maps it. The result has one slot per
   * call, in order: the value that method would have resolved to, or the Error it would
   * have rejected with (returned, not thrown). With `stopOnError`, the calls after the
   * first failure are not run and their slots are `undefined`. A call that cannot be
   * batched (open, streams, watch, walk, batch, ...: README "Batch") refuses the whole
   * batch with a TypeError (ERR_INVALID_ARG_VALUE) before anything is sent; `signal` and
   * `timeout` cancel the whole batch, which then rejects.
   */
  async batch(calls: readonly BatchCall[], options?: BatchOptions): Promise<unknown[]> {
    if (!Array.isArray(calls)) throw invalidArg("calls", "an instance of Array", calls);
    if (options !== undefined && (typeof options !== "object" || options === null)) {
      throw invalidArg("options", "of type object", options);
    }
    const stop = options?.stopOnError ?? false;
    if (typeof stop !== "boolean") throw invalidArg("options.stopOnError", "of type boolean", stop);
    const plans: (Plan | Error)[] = [];
    const list = calls as readonly unknown[];
    for (let i = 0; i < list.length; i++) {
      const c = list[i];
      if (!Array.isArray(c) || typeof c[0] !== "string") {
        throw invalidArg(`calls[${i}]`, "an array [methodName, ...args]", c);
      }
      const name = c[0];
      const planner = Object.hasOwn(PLANNERS, name) ? PLANNERS[name as BatchMethod] : undefined;
      if (planner === undefined) {
        throw batchRefusal(i, c, Object.hasOwn(NOT_BATCHABLE, name) ? NOT_BATCHABLE[name]!
          : `'${name}' is not a method of the client (a batch holds ${Object.keys(PLANNERS).join(", ")})`);
      }
      const args = c.slice(1);
      const own = ownCallOptions(args);
      if (own !== undefined) throw batchRefusal(i, c, own);
      let plan: Plan | Error;
      try {
        plan = planner(...args);
      } catch (e) {
        if (e instanceof NotBatchable) throw batchRefusal(i, c, e.message);
        plan = e as Error; // a bad argument: that call's error, in its slot, as the method rejects
      }
      if (stop && !(plan instanceof Error) && plan.decidedHere !== undefined) {
        throw batchRefusal(i, c, `${plan.decidedHere}, so the daemon could not stop at it with stopOnError`);
      }
      plans.push(plan);
    }
    // a call refused here is not sent; with stopOnError, nor is any after it
    const wire: unknown[][] = [];
    const at: number[] = [];
    let sent = plans.length;
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i]!;
      if (p instanceof Error) {
        if (stop) {
          sent = i;
          break;
        }
        continue;
      }
      at[i] = wire.length;
      for (const w of p.wire) wire.push([w.name, encodeArgs(METHODS[w.name], w.args)]);
    }
    if (wire.length > MAX_BATCH) {
      throw invalidArg("calls", `must make at most ${MAX_BATCH} daemon calls`, `${wire.length} calls`, true);
    }
    const out: unknown[] = new Array<unknown>(plans.length).fill(undefined);
    let raw: unknown[] = [];
    if (wire.length > 0) {
      const { result, fds } = await this.call({ name: "batch", args: { calls: wire, stop_on_error: stop },
        syscall: "batch", paths: [], signal: options?.signal, timeout: options?.timeout });
      closeFds(fds);
      if (!Array.isArray(result) || result.length !== wire.length) throw new TypeError("beneathd: malformed batch reply");
      raw = result;
    }
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i]!;
      if (p instanceof Error) {
        out[i] = i <= sent ? p : undefined;
        continue;
      }
      if (i > sent) break;
      out[i] = settle(p, raw.slice(at[i]!, at[i]! + p.wire.length));
    }
    return out;
  }

  // ---- metadata ------------------------------------------------------------------------

  async stat(path: PathArg, options?: CallOptions & { bigint?: boolean }): Promise<Stats | BigIntStats> {
    const p = wirePath(path);
    return toStats(await this.simple("stat", "stat", { path: p, follow_symlinks: true }, [path], options),
                   options?.bigint === true);
  }

  async lstat(path: PathArg, options?: CallOptions & { bigint?: boolean }): Promise<Stats | BigIntStats> {
    const p = wirePath(path);
    return toStats(await this.simple("lstat", "lstat", { path: p }, [path], options), options?.bigint === true);
  }

  /** `F_OK` is existence (following links beneath the root); `R_OK`/`W_OK`/`X_OK` are
   * judged from the owner's permission bits: the daemon runs as the project's owner, and
   * acts with its rights. */
  async access(path: PathArg, mode: number = fs.constants.F_OK, options?: CallOptions): Promise<void> {
    if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 7) {
      throw invalidArg("mode", "must be an integer >= 0 && <= 7", mode, true);
    }
    const st = toStats(await this.simple("stat", "access", { path: wirePath(path), follow_symlinks: true }, [path],
                                         options)) as Stats;
    const want = ((mode & fs.constants.R_OK) ? 0o400 : 0) | ((mode & fs.constants.W_OK) ? 0o200 : 0)
      | ((mode & fs.constants.X_OK) ? 0o100 : 0);
    if ((st.mode & want) !== want) throw systemError("EACCES", "access", path);
  }

  /** Whether `path` exists (links followed beneath the root); a path leading out is an
   * EscapeError, not a "no" (as every method). */
  async exists(path: PathArg, options?: CallOptions): Promise<boolean> {
    return await this.simple("exists", "stat", { path: wirePath(path) }, [path], options) === true;
  }

  async readlink(path: PathArg, options?: CallOptions & { encoding?: Encoding } | BufferEncoding): Promise<string | Buffer> {
    const o = optObj(options, "encoding");
    const r = await this.simple("readlink", "readlink", { path: wirePath(path) }, [path], o);
    return echo(wireBytes(r), isBuf(path), o.encoding);
  }

  /** Relative to the root ("." for the root itself); strict as Node's: a missing path is
   * ENOENT (the daemon's realpath, like os.path.realpath, is not, so a stat goes with it,
   * pipelined: one round trip; its error is realpath(3)'s: ENOENT, ENOTDIR, ELOOP). A
   * batch sends the same two calls. */
  async realpath(path: PathArg, options?: CallOptions & { encoding?: Encoding } | BufferEncoding): Promise<string | Buffer> {
    const o = optObj(options, "encoding");
    const p = wirePath(path);
    const [there, r] = await Promise.allSettled([
      this.simple("stat", "realpath", { path: p, follow_symlinks: true }, [path], o),
      this.simple("realpath", "realpath", { path: p }, [path], o)]);
    if (there.status === "rejected") throw there.reason;
    if (r.status === "rejected") throw r.reason;
    return echo(wireBytes(r.value), isBuf(path), o.encoding);
  }

  /** The directory's entries. `withFileTypes` gives Dirents (with the daemon's extra
   * `linkTarget` and `stats`); `recursive` lists the whole tree below (a streamed walk),
   * paths relative to `path` as Node gives them. */
  async readdir(path: PathArg, options?: CallOptions & { withFileTypes?: boolean; recursive?: boolean;
    encoding?: Encoding } | BufferEncoding): Promise<(string | Buffer)[] | Dirent[]> {
    const o = optObj(options, "encoding");
    const asBuf = isBuf(path) || o.encoding === "buffer";
    const conv = (b: Uint8Array): string | Buffer => echo(b, asBuf, o.encoding);
    const p = wirePath(path);
    if (o.recursive === true) return this.readdirRecursive(path, trimTop(p), o.withFileTypes === true, conv, o);
    if (o.withFileTypes !== true) return toNames(await this.simple("listdir", "scandir", { path: p }, [path], o), conv);
    return this.dirents(p, typeof path === "string" ? path : Buffer.from(p), path, conv, o);
  }

  /** One directory's entries as Dirents (a scandir with the link texts) under `parentPath`. */
  private async dirents(dir: Buffer, parentPath: string | Buffer, path: PathArg,
                        conv: (b: Uint8Array) => string | Buffer, o: CallOptions): Promise<Dirent[]> {
    const { result, fds } = await this.call({ name: "scandir", args: { path: dir }, syscall: "scandir", paths: [path],
      signal: o.signal, timeout: o.timeout, options: { link_target: true, packed: true } });
    const parts = packedParts(result, fds);
    return parts !== null ? packedDirents(parts, parentPath, conv) : toDirents(result, parentPath, conv);
  }

  private async readdirRecursive(path: PathArg, p: Buffer, types: boolean, conv: (b: Uint8Array) => string | Buffer,
                                 o: CallOptions): Promise<(string | Buffer)[] | Dirent[]> {
    const names: (string | Buffer)[] = [];
    const dirents: Dirent[] = [];
    const top = p.toString("latin1");
    const rel = (dirpath: Uint8Array): Buffer => { // dirpath below `path`, as Node's recursive readdir names it
      const b = Buffer.from(dirpath.buffer, dirpath.byteOffset, dirpath.byteLength);
      if (top === "." || top === "") return b;
      return b.subarray(Math.min(b.length, p.length + 1));
    };
    for await (const [dirpath, dirnames, filenames] of this.walkRaw(p, true, false, o)) {
      const under = rel(dirpath);
      const isTop = under.length === 0 || (top === "." && dirpath.length === 1 && dirpath[0] === 0x2e);
      const join = (n: Uint8Array): Buffer => isTop ? Buffer.from(n) : Buffer.concat([under, Buffer.from("/"), n]);
      if (!types) {
        for (const n of [...dirnames, ...filenames]) names.push(conv(join(n)));
        continue;
      }
      // Dirents need each entry's type: one scandir of this directory (walk lists names only)
      const here = isTop ? p : Buffer.concat([p, Buffer.from("/"), under]);
      dirents.push(...await this.dirents(here, conv(here), path, conv, o));
    }
    return types ? dirents : names;
  }

  /** `du`: bytes on disk and entries below `path` (not a Node method; the daemon's). */
  async du(path: PathArg = ".", options?: ProgressOptions): Promise<{ bytes: number; entries: number }> {
    const r = await this.long("du", "du", { path: wirePath(path) }, [path], options);
    if (!Array.isArray(r) || r.length !== 2) throw new TypeError("beneathd: malformed du reply");
    return { bytes: Number(r[0]), entries: Number(r[1]) };
  }

  /** The daemon's counters since its start (not a Node method; the daemon's `stats`,
   * open to read-only peers too): `calls`, `errors`, `escapes` (refused, each logged),
   * `connections` (open now), `connections_total`, `peers_refused` (PROTOCOL.md "The
   * daemon's counters"); names a newer daemon adds are kept. */
  async stats(options?: CallOptions): Promise<Record<string, number>> {
    const r = await this.simple("stats", "stats", {}, [], options);
    if (r === null || typeof r !== "object" || Array.isArray(r)) throw new TypeError("beneathd: malformed stats reply");
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(r as Record<string, unknown>)) {
      if (typeof v !== "number" && typeof v !== "bigint") throw new TypeError("beneathd: malformed stats reply");
      out[k] = Number(v);
    }
    return out;
  }

  /** `pathlib.Path.walk` beneath the root, streamed: `[dirpath, dirnames, filenames]`
   * arrays, paths relative to the root in the caller's type. Removing names from
   * `dirnames` (top-down) prunes them. Leaving the loop early cancels the walk. */
  async *walk(top: PathArg = ".", options?: CallOptions & { topDown?: boolean; followSymlinks?: boolean;
    encoding?: Encoding }): AsyncGenerator<[string | Buffer, (string | Buffer)[], (string | Buffer)[]]> {
    const asBuf = isBuf(top) || options?.encoding === "buffer";
    const conv = (b: Uint8Array): string | Buffer => echo(b, asBuf, options?.encoding);
    const topDown = options?.topDown ?? true;
    const pruned = new Set<string>();
    const key = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
    const under = (k: string): boolean => {
      for (let i = k.lastIndexOf("/"); ; i = k.lastIndexOf("/", i - 1)) {
        if (pruned.has(k)) return true;
        if (i <= 0) return false;
        k = k.slice(0, i);
      }
    };
    for await (const [dp, dn, fn] of this.walkRaw(trimTop(wirePath(top, "top")), topDown, options?.followSymlinks === true,
                                                  options ?? {}, top)) {
      const k = key(dp);
      if (pruned.size > 0 && under(k)) continue;
      const dirnames = dn.map(conv);
      const before = dirnames.slice();
      yield [conv(dp), dirnames, fn.map(conv)];
      if (topDown && dirnames.length !== before.length) {
        const kept = new Set(dirnames.map((n) => typeof n === "string" ? n : n.toString("latin1")));
        dn.forEach((raw, i) => {
          const n = before[i]!;
          if (!kept.has(typeof n === "string" ? n : n.toString("latin1"))) {
            pruned.add(k === "." ? key(raw) : `${k}/${key(raw)}`);
          }
        });
      }
    }
  }

  /** The walk's tuples as wire bytes, paced by credit: a page is taken back (`more`) as it
   * is handed out, and a consumer that stops early cancels the walk in the daemon. */
  private async *walkRaw(top: Buffer, topDown: boolean, follow: boolean, o: CallOptions, shown?: PathArg
  ): AsyncGenerator<[Uint8Array, Uint8Array[], Uint8Array[]]> {
    const pages: unknown[][] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    let failure: Error | null = null;
    const { msgid, transport, promise } = this.start({ name: "walk", args: { top, top_down: topDown, follow_symlinks: follow },
      syscall: "scandir", paths: [shown ?? top], signal: o.signal, timeout: o.timeout,
      onPartial: (kind, data) => {
        if (kind !== "walk") return;
        if (!Array.isArray(data)) throw new TypeError("beneathd: malformed walk page");
        pages.push(data);
        wake?.();
      } });
    promise.then(({ fds }) => { closeFds(fds); finished = true; wake?.(); },
                 (e: Error) => { failure = e; finished = true; wake?.(); });
    let complete = false;
    try {
      for (;;) {
        if (pages.length === 0) {
          if (finished) break;
          await new Promise<void>((r) => { wake = r; });
          wake = null;
          continue;
        }
        const page = pages.shift()!;
        if (!finished && transport !== null && transport === this.transport) {
          transport.send(transport.conn.more(msgid)); // one page of credit back
        }
        for (const t of page) {
          if (!Array.isArray(t) || t.length !== 3 || !(t[0] instanceof Uint8Array) || !Array.isArray(t[1])
              || !Array.isArray(t[2])) throw new TypeError("beneathd: malformed walk tuple");
          yield [t[0], t[1] as Uint8Array[], t[2] as Uint8Array[]];
        }
      }
      complete = true;
      if (failure !== null) throw failure;
    } finally {
      if (!complete && !finished) { // left early: the daemon stops walking
        const p = this.pending.get(msgid);
        if (p !== undefined) this.giveUp(msgid, p, abortError(AbortSignal.abort()));
      }
    }
  }

  /**
   * Watch `path` (a directory, with the whole tree below it by default, or a file): an
   * async iterator of `{eventType, filename, kind, path, isDir, cookie}`, shaped like
   * `fs.promises.watch`. The request goes out now; `await w.ready` resolves once the
   * daemon has the watch in place (what changes from then on is seen) and rejects with a
   * setup error (ENOENT, EscapeError, ENOSPC), which the first `next()` also rejects with.
   * Leaving the loop, `w.close()` or the `signal` (an AbortError, as Node's) ends it in the
   * daemon. `timeout` bounds the setup only. The iteration ends by itself when the
   * watched path is deleted or moved away (after that event), or rejects with the error
   * that stopped it (ENOSPC: the watch limit, reached as the tree grew).
   */
  watch(path: PathArg = ".", options?: WatchOptions | BufferEncoding): Watcher {
    const o = optObj<WatchOptions>(options, "encoding");
    checkWatchOptions(o);
    const p = wirePath(path);
    const w = new Watcher(path, p, isBuf(path) || o.encoding === "buffer", o.encoding, o.signal,
                          o.timeout ?? this.defaultTimeout);
    if (w.closed) return w; // the signal was aborted already: nothing is sent
    const { msgid, transport, promise } = this.start({ name: "watch",
      args: { path: p, recursive: o.recursive ?? false, max_queue: o.maxQueue }, syscall: "watch", paths: [path],
      untimed: true, onPartial: (kind, data) => w.page(kind, data) });
    const pend = msgid >= 0 ? this.pending.get(msgid) : undefined;
    const ours = (): boolean => pend !== undefined && this.pending.get(msgid) === pend && transport === this.transport;
    w.attach({
      more: () => { if (ours()) transport!.send(transport!.conn.more(msgid)); },
      cancel: () => { if (ours()) this.giveUp(msgid, pend!, abortError(AbortSignal.abort())); },
    }, promise.then(({ fds }) => closeFds(fds)));
    return w;
  }

  // ---- namespace changes ------------------------------------------------------------------

  /** `recursive` creates the missing parents and returns the first directory it made
   * (as Node does), or undefined if there was none to make. */
  async mkdir(path: PathArg, options?: CallOptions & { recursive?: boolean; mode?: number | string } | number | string
  ): Promise<string | Buffer | undefined> {
    const o = typeof options === "number" || typeof options === "string" ? { mode: options } : options ?? {};
    const mode = toMode(o.mode, "mode", 0o777);
    const p = wirePath(path);
    if (o.recursive !== true) {
      await this.simple("mkdir", "mkdir", { path: p, mode }, [path], o);
      return undefined;
    }
    // the first missing ancestor, for the return value: every prefix asked at once (pipelined)
    const prefixes = mkdirPrefixes(p);
    const there = await Promise.all(prefixes.map((x) => this.exists(x, o)));
    await this.simple("mkdir", "mkdir", { path: p, mode, parents: true, exist_ok: true }, [path], o);
    return firstMade(prefixes, there, path);
  }

  async unlink(path: PathArg, options?: CallOptions): Promise<void> {
    await this.simple("unlink", "unlink", { path: wirePath(path) }, [path], options);
  }

  async rmdir(path: PathArg, options?: CallOptions): Promise<void> {
    await this.simple("rmdir", "rmdir", { path: wirePath(path) }, [path], options);
  }

  /** `rm -r -f` natively beneath the root; never follows a symlink. Errors as Node's: a
   * missing path is ENOENT from `lstat`, a directory without `recursive` is a SystemError
   * `ERR_FS_EISDIR`. */
  async rm(path: PathArg, options?: ProgressOptions & { recursive?: boolean; force?: boolean }): Promise<void> {
    try {
      await this.long("rm", "rm", { path: wirePath(path), recursive: options?.recursive === true,
        force: options?.force === true }, [path], options);
    } catch (e) {
      throw rmError(e as Error, path, options?.recursive === true);
    }
  }

  async rename(oldPath: PathArg, newPath: PathArg, options?: CallOptions): Promise<void> {
    await this.simple("rename", "rename", { src: wirePath(oldPath, "oldPath"), dst: wirePath(newPath, "newPath") },
                      [oldPath, newPath], options);
  }

  /** Rename; across mounts inside the root, copy then remove. `overwrite` false refuses an
   * existing destination (EEXIST). */
  async move(src: PathArg, dest: PathArg, options?: ProgressOptions & { overwrite?: boolean }): Promise<void> {
    await this.long("move", "rename", { src: wirePath(src, "src"), dst: wirePath(dest, "dest"),
      overwrite: options?.overwrite === true }, [src, dest], options);
  }

  /** Swap two names atomically (`renameat2(RENAME_EXCHANGE)`). */
  async exchange(a: PathArg, b: PathArg, options?: CallOptions): Promise<void> {
    await this.simple("exchange", "rename", { a: wirePath(a, "a"), b: wirePath(b, "b") }, [a, b], options);
  }

  /** `cp -r`: `force` (default true) replaces existing files; with `force: false`,
   * `errorOnExist` makes an existing destination EEXIST, else the copy of an existing
   * single file is skipped (a tree is then copied without replacing, EEXIST at the first
   * existing file). `preserveTimestamps` also keeps times and owner (cp -p). */
  async cp(src: PathArg, dest: PathArg, options?: ProgressOptions & { recursive?: boolean; force?: boolean;
    errorOnExist?: boolean; preserveTimestamps?: boolean }): Promise<void> {
    const force = options?.force ?? true;
    if (!force && options?.errorOnExist !== true && options?.recursive !== true && await this.exists(dest, options)) {
      return;
    }
    await this.long("cp", "cp", { src: wirePath(src, "src"), dst: wirePath(dest, "dest"),
      recursive: options?.recursive === true, overwrite: force, preserve: options?.preserveTimestamps === true },
    [src, dest], options);
  }

  /** `COPYFILE_EXCL` refuses an existing destination; `COPYFILE_FICLONE_FORCE` insists on a
   * reflink; otherwise a reflink is tried first, then an in-kernel copy. */
  async copyFile(src: PathArg, dest: PathArg, mode = 0, options?: ProgressOptions): Promise<void> {
    if (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 || mode > 7) {
      throw invalidArg("mode", "must be an integer >= 0 && <= 7", mode, true);
    }
    const { COPYFILE_EXCL, COPYFILE_FICLONE_FORCE } = fs.constants;
    await this.long("copy_file", "copyfile", { src: wirePath(src, "src"), dst: wirePath(dest, "dest"),
      overwrite: (mode & COPYFILE_EXCL) === 0, reflink: (mode & COPYFILE_FICLONE_FORCE) ? "always" : "auto" },
    [src, dest], options);
  }

  async link(existingPath: PathArg, newPath: PathArg, options?: CallOptions): Promise<void> {
    await this.simple("link", "link", { src: wirePath(existingPath, "existingPath"), dst: wirePath(newPath, "newPath") },
                      [existingPath, newPath], options);
  }

  /** `type` is accepted and ignored (it matters on Windows only). */
  async symlink(target: PathArg, path: PathArg, type?: string | null, options?: CallOptions): Promise<void> {
    void type;
    await this.simple("symlink", "symlink", { target: wirePath(target, "target"), path: wirePath(path) },
                      [target, path], options);
  }

  /** Follows a final symlink, as Node's does (beneath the root: the daemon's own chmod
   * refuses a link, whose mode Linux cannot change, so a link is resolved and retried). */
  async chmod(path: PathArg, mode: number | string, options?: CallOptions): Promise<void> {
    const p = wirePath(path);
    const m = toMode(mode, "mode");
    try {
      await this.simple("chmod", "chmod", { path: p, mode: m }, [path], options);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ELOOP") throw e;
      await this.simple("chmod", "chmod", { path: await this.resolved(p, path, "chmod", options), mode: m },
                        [path], options);
    }
  }

  /** A path with its final links followed beneath the root (an escape is EscapeError). */
  private async resolved(p: Buffer, path: PathArg, syscall: string, o?: CallOptions): Promise<Buffer> {
    const r = await this.simple("realpath", syscall, { path: p }, [path], o);
    const b = wireBytes(r);
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  }

  async chown(path: PathArg, uid: number, gid: number, options?: CallOptions): Promise<void> {
    for (const [n, v] of [["uid", uid], ["gid", gid]] as const) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < -1 || v > 0xffffffff) {
        throw invalidArg(n, "must be an integer >= -1 && <= 4294967295", v, true);
      }
    }
    await this.simple("chown", "chown", { path: wirePath(path), uid, gid }, [path], options);
  }

  /** Times as Node takes them: a Date, seconds (a number) or a numeric string. Follows a
   * final symlink as Node's does (the daemon's utime sets the link's own times, so the
   * path is resolved beneath the root first: one more round trip). */
  async utimes(path: PathArg, atime: Date | number | string, mtime: Date | number | string,
               options?: CallOptions): Promise<void> {
    const ns = [toNs(atime, "atime"), toNs(mtime, "mtime")];
    const p = await this.resolved(wirePath(path), path, "utime", options);
    await this.simple("utime", "utime", { path: p, ns }, [path], options);
  }

  /** Sets a symlink's own times (Node's lutimes). */
  async lutimes(path: PathArg, atime: Date | number | string, mtime: Date | number | string,
                options?: CallOptions): Promise<void> {
    await this.simple("utime", "utime", { path: wirePath(path), ns: [toNs(atime, "atime"), toNs(mtime, "mtime")] },
                      [path], options);
  }

  async truncate(path: PathArg, len = 0, options?: CallOptions): Promise<void> {
    if (typeof len !== "number" || !Number.isInteger(len)) throw invalidArg("len", "of type number", len);
    await this.simple("truncate", "open", { path: wirePath(path), length: Math.max(0, len) }, [path], options);
  }

  // ---- contents ----------------------------------------------------------------------------

  /** A file handle over the fd the daemon opened beneath the root (`close()` it). */
  async open(path: PathArg, flags?: string | number, mode?: number | string, options?: CallOptions
  ): Promise<FileHandle> {
    const m = openMode(flags);
    const perms = toMode(mode, "mode", 0o666);
    const { fds } = await this.call({ name: "open", args: { path: wirePath(path), mode: m, perms }, syscall: "open",
      paths: [path], signal: options?.signal, timeout: options?.timeout });
    if (fds.length !== 1) {
      closeFds(fds);
      throw systemError("EPROTO", "open", path, undefined, "the daemon sent no fd");
    }
    return new FileHandle(fds[0]!);
  }

  /** An atomic writer: the file appears at `path` whole when the handle is closed, or
   * never (`discard()`); `exclusive` makes a name that exists by then EEXIST. */
  async openAtomic(path: PathArg, options?: CallOptions & { mode?: number | string; exclusive?: boolean }
  ): Promise<FileHandle> {
    const perms = toMode(options?.mode, "mode", 0o666);
    const { result, fds } = await this.call({ name: "open", args: { path: wirePath(path),
      mode: options?.exclusive === true ? "xb" : "wb", perms, atomic: true }, syscall: "open", paths: [path],
    signal: options?.signal, timeout: options?.timeout });
    if (fds.length !== 1 || typeof result !== "number") {
      closeFds(fds);
      throw systemError("EPROTO", "open", path, undefined, "the daemon sent no atomic writer");
    }
    const handle = result;
    return new FileHandle(fds[0]!, {
      publish: async () => { await this.simple("writer_publish", "rename", { handle }, [path]); },
      discard: async () => {
        try {
          await this.simple("writer_discard", "unlink", { handle }, [path]);
        } catch {
          // a broken connection discards the writer anyway
        }
      },
    });
  }

  /** The whole file, of any size (read here through the fd the daemon opens). */
  async readFile(path: PathArg, options?: CallOptions & { encoding?: BufferEncoding | null; flag?: string }
    | BufferEncoding): Promise<string | Buffer> {
    const o = optObj(options, "encoding");
    let fh: FileHandle;
    try {
      fh = await this.open(path, o.flag ?? "r", undefined, o);
    } catch (e) { // Node opens a directory and fails reading it
      if ((e as { code?: string }).code === "EISDIR") throw systemError("EISDIR", "read");
      throw e;
    }
    try {
      return await fh.readFile({ encoding: o.encoding ?? null, signal: o.signal });
    } finally {
      await fh.close();
    }
  }

  /** Atomic replace, of any size: up to BIG_WRITE bytes in the request, above that written
   * here into an atomic writer's fd. An existing file keeps its mode; `flag: "a"` appends
   * (not atomic), `"wx"` refuses an existing file. */
  async writeFile(path: PathArg, data: string | NodeJS.ArrayBufferView, options?: CallOptions & {
    encoding?: BufferEncoding | null; mode?: number | string; flag?: string;
    progress?: (p: Progress) => void } | BufferEncoding): Promise<void> {
    const o = optObj(options, "encoding");
    const buf = toData(data, o.encoding ?? undefined);
    const flag = o.flag ?? "w";
    if (flag.startsWith("a")) return this.appendFile(path, buf, o);
    const mode = toMode(o.mode, "mode", 0o666);
    if (flag.includes("x") || buf.length > BIG_WRITE) {
      const fh = await this.openAtomic(path, { ...o, mode, exclusive: flag.includes("x") });
      try {
        await fh.writeFile(buf, { signal: o.signal, progress: o.progress });
      } catch (e) {
        await fh.discard();
        throw e;
      }
      await fh.close();
      return;
    }
    await this.long("write_file", "open", { path: wirePath(path), data: buf, mode }, [path], o);
  }

  /** Appends (O_APPEND, created with `mode` if missing): not atomic, as Node's. */
  async appendFile(path: PathArg, data: string | NodeJS.ArrayBufferView, options?: CallOptions & {
    encoding?: BufferEncoding | null; mode?: number | string } | BufferEncoding): Promise<void> {
    const o = optObj(options, "encoding");
    const buf = toData(data, o.encoding ?? undefined);
    const fh = await this.open(path, "a", o.mode, o);
    try {
      await fh.writeFile(buf, { signal: o.signal });
    } finally {
      await fh.close();
    }
  }

  /** A Readable of the file's bytes `start`..`end` (inclusive, as Node's), read from the
   * fd the daemon passes, not through the socket. */
  createReadStream(path: PathArg, options?: { start?: number; end?: number; highWaterMark?: number;
    encoding?: BufferEncoding; signal?: AbortSignal } | BufferEncoding): Readable {
    const o = optObj(options, "encoding");
    const start = o.start ?? 0;
    const end = o.end ?? Infinity;
    if (!Number.isInteger(start) || start < 0) throw invalidArg("start", "must be an integer >= 0", start, true);
    if (end !== Infinity && (!Number.isInteger(end) || end < start)) {
      throw invalidArg("end", `must be an integer >= ${start}`, end, true);
    }
    let fh: FileHandle | null = null;
    let pos = start;
    const hwm = o.highWaterMark ?? 64 * 1024;
    const stream = new Readable({
      highWaterMark: hwm, encoding: o.encoding, signal: o.signal,
      construct: (cb) => { // "open" and "ready" as fs.ReadStream emits them
        this.open(path, "r", undefined, { signal: o.signal }).then((h) => {
          fh = h;
          cb();
          stream.emit("open", h.fd);
          stream.emit("ready");
        }, (e: Error) => cb(e));
      },
      read: (size) => {
        const want = Math.min(Math.max(size, hwm), end === Infinity ? Infinity : end - pos + 1);
        if (want <= 0) {
          stream.push(null);
          return;
        }
        const buf = Buffer.allocUnsafe(Math.min(want, 8 << 20));
        fh!.read(buf, 0, buf.length, pos).then(({ bytesRead: n }) => { // counted: destroy waits for it
          pos += n;
          stream.push(n > 0 ? buf.subarray(0, n) : null);
        }, (err: Error) => stream.destroy(err));
      },
      destroy: (err, cb) => {
        if (fh === null) return cb(err);
        fh.close().then(() => cb(err), (e: Error) => cb(err ?? e));
      },
    });
    return stream;
  }

  /** A Writable into an atomic writer: the file appears at `path` whole when the stream
   * finishes, and not at all if it errors or is destroyed first. */
  createWriteStream(path: PathArg, options?: { mode?: number | string; highWaterMark?: number; flags?: string;
    signal?: AbortSignal }): Writable {
    let fh: FileHandle | null = null;
    let published = false;
    const flags = options?.flags ?? "w";
    if (flags !== "w" && flags !== "wx" && flags !== "xw") { // the stream is an atomic writer: only a whole new file
      throw invalidArg("options.flags", "must be 'w' or 'wx' (the stream publishes a whole file; use open() to append "
        + "or write in place)", flags, true);
    }
    const exclusive = flags !== "w";
    const stream: Writable = new Writable({
      highWaterMark: options?.highWaterMark ?? 64 * 1024, signal: options?.signal, decodeStrings: true,
      construct: (cb) => {
        this.openAtomic(path, { mode: options?.mode, exclusive, signal: options?.signal }).then((h) => {
          fh = h;
          cb();
          stream.emit("open", h.fd);
          stream.emit("ready");
        }, (e: Error) => cb(e));
      },
      write: (chunk: Buffer, _enc, cb) => { fh!.writeFile(chunk).then(() => cb(), (e: Error) => cb(e)); },
      final: (cb) => {
        fh!.close().then(() => { published = true; cb(); }, (e: Error) => cb(e));
      },
      destroy: (err, cb) => {
        if (fh === null || published) return cb(err);
        fh.discard().then(() => cb(err), () => cb(err));
      },
    });
    return stream;
  }
}

/** Connect to a daemon's socket. */
export async function connect(socketPath: string, options?: ConnectOptions): Promise<Client> {
  if (typeof socketPath !== "string") throw invalidArg("socketPath", "of type string", socketPath);
  const t = options?.timeout;
  if (t !== undefined && (typeof t !== "number" || !(t > 0))) throw invalidArg("timeout", "must be > 0", t, true);
  return new Client(socketPath, t);
}
