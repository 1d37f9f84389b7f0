/**
 * Results in Node's shapes: `Stats` / `BigIntStats` (the fields and `is*()` methods of
 * `fs.Stats`), `Dirent` (`name`, `parentPath`, `is*()`), built from PROTOCOL.md's wire
 * forms, and the path conversions (caller's string or Buffer to wire bytes and back).
 */
import { constants } from "node:fs";

import { invalidArg } from "./errors.js";

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK } = constants;

/** The daemon's limit on a path parameter (PROTOCOL.md "Parameter types"). */
export const PATH_MAX_BYTES = 64 * 1024;

export type Encoding = BufferEncoding | "buffer" | null | undefined;

/** A caller's path as wire bytes (Node's own checks: a string, Buffer or Uint8Array, no NUL). */
export function wirePath(p: unknown, name = "path"): Buffer {
  let b: Buffer;
  if (typeof p === "string") b = Buffer.from(p, "utf8");
  else if (Buffer.isBuffer(p)) b = p;
  else if (p instanceof Uint8Array) b = Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  else throw invalidArg(name, "of type string or an instance of Buffer or Uint8Array", p);
  if (b.includes(0)) {
    throw invalidArg(name, "must be a string, Uint8Array, or URL without null bytes", p, true);
  }
  if (b.length > PATH_MAX_BYTES) {
    throw invalidArg(name, `must be at most ${PATH_MAX_BYTES} bytes (the daemon's path limit)`,
                     `${b.length} bytes`, true);
  }
  return b;
}

/** Bytes from the daemon in the type the caller used: a Buffer for a Buffer path or
 * `encoding: "buffer"`, else a string in the encoding (utf8 by default). */
export function echo(b: Uint8Array, asBuffer: boolean, encoding?: Encoding): string | Buffer {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (asBuffer || encoding === "buffer") return buf;
  return buf.toString(encoding ?? "utf8");
}

function bytes(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  throw new TypeError("beneathd: malformed reply (expected bytes)");
}

export { bytes as wireBytes };

const NS_PER_MS = 1_000_000n;

function int(v: unknown): bigint {
  if (typeof v === "bigint") return v;
  if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
  throw new TypeError("beneathd: malformed stat reply");
}

class StatBase<T extends number | bigint> {
  declare dev: T;
  declare ino: T;
  declare mode: T;
  declare nlink: T;
  declare uid: T;
  declare gid: T;
  declare rdev: T;
  declare size: T;
  declare blksize: T;
  declare blocks: T;
  declare atimeMs: T;
  declare mtimeMs: T;
  declare ctimeMs: T;
  /** Not known through the daemon (it sends no birth time): the epoch, as Node gives
   * where the file system has none. */
  declare birthtimeMs: T;
  declare atime: Date;
  declare mtime: Date;
  declare ctime: Date;
  declare birthtime: Date;

  private fmt(): number {
    return Number(this.mode) & S_IFMT;
  }

  isFile(): boolean { return this.fmt() === S_IFREG; }
  isDirectory(): boolean { return this.fmt() === S_IFDIR; }
  isSymbolicLink(): boolean { return this.fmt() === S_IFLNK; }
  isFIFO(): boolean { return this.fmt() === S_IFIFO; }
  isSocket(): boolean { return this.fmt() === S_IFSOCK; }
  isCharacterDevice(): boolean { return this.fmt() === S_IFCHR; }
  isBlockDevice(): boolean { return this.fmt() === S_IFBLK; }
}

/** `fs.Stats`' fields and methods (numbers; times in ms as floats, like Node's). */
export class Stats extends StatBase<number> {}

/** `fs.BigIntStats` (`{bigint: true}`): bigints, plus the `*Ns` nanosecond times. */
export class BigIntStats extends StatBase<bigint> {
  declare atimeNs: bigint;
  declare mtimeNs: bigint;
  declare ctimeNs: bigint;
  declare birthtimeNs: bigint;
}

/** A wire stat array (`mode, ino, dev, nlink, uid, gid, size, atime_ns, mtime_ns, ctime_ns,
 * blksize, blocks, rdev`) as Node's Stats. */
export function toStats(wire: unknown, bigint = false): Stats | BigIntStats {
  if (!Array.isArray(wire) || wire.length !== 13) throw new TypeError("beneathd: malformed stat reply");
  const v = wire.map(int);
  const [mode, ino, dev, nlink, uid, gid, size, atimeNs, mtimeNs, ctimeNs, blksize, blocks, rdev] = v as
    [bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint];
  const date = (ns: bigint): Date => new Date(Number(ns / NS_PER_MS));
  if (bigint) {
    const s = new BigIntStats();
    Object.assign(s, { dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks,
      atimeMs: atimeNs / NS_PER_MS, mtimeMs: mtimeNs / NS_PER_MS, ctimeMs: ctimeNs / NS_PER_MS, birthtimeMs: 0n,
      atimeNs, mtimeNs, ctimeNs, birthtimeNs: 0n,
      atime: date(atimeNs), mtime: date(mtimeNs), ctime: date(ctimeNs), birthtime: new Date(0) });
    return s;
  }
  const ms = (ns: bigint): number => Number(ns / 1000n) / 1000; // microsecond precision, as Node's
  const s = new Stats();
  Object.assign(s, { dev: Number(dev), ino: Number(ino), mode: Number(mode), nlink: Number(nlink), uid: Number(uid),
    gid: Number(gid), rdev: Number(rdev), size: Number(size), blksize: Number(blksize), blocks: Number(blocks),
    atimeMs: ms(atimeNs), mtimeMs: ms(mtimeNs), ctimeMs: ms(ctimeNs), birthtimeMs: 0,
    atime: date(atimeNs), mtime: date(mtimeNs), ctime: date(ctimeNs), birthtime: new Date(0) });
  return s;
}

const KIND_MODE: Record<string, number> = {
  file: S_IFREG, dir: S_IFDIR, symlink: S_IFLNK, fifo: S_IFIFO, socket: S_IFSOCK, char: S_IFCHR, block: S_IFBLK,
};
const KIND_OF_MODE: Record<number, string> =
  Object.fromEntries(Object.entries(KIND_MODE).map(([kind, mode]) => [mode, kind]));

/** The kind of a mode's file type, as the daemon names it ("other" for none of those). */
export function kindOfMode(mode: number): string {
  return KIND_OF_MODE[mode & S_IFMT] ?? "other";
}

/** `fs.Dirent`'s shape: `name`, `parentPath` (and the older `path`), the `is*()` methods;
 * plus what the daemon also knows: `linkTarget` (a symlink's text) and `stats`, the
 * entry's lstat when the daemon sent it. */
export class Dirent {
  constructor(readonly name: string | Buffer, readonly parentPath: string | Buffer, readonly kind: string,
              readonly linkTarget: string | Buffer | null = null, readonly stats: Stats | null = null) {}

  /** Node's deprecated alias of parentPath. */
  get path(): string | Buffer { return this.parentPath; }

  private is(k: string): boolean { return this.kind === k; }
  isFile(): boolean { return this.is("file"); }
  isDirectory(): boolean { return this.is("dir"); }
  isSymbolicLink(): boolean { return this.is("symlink"); }
  isFIFO(): boolean { return this.is("fifo"); }
  isSocket(): boolean { return this.is("socket"); }
  isCharacterDevice(): boolean { return this.is("char"); }
  isBlockDevice(): boolean { return this.is("block"); }

  /** The S_IFMT bits of the entry's type (0 for "other"). */
  get typeMode(): number { return KIND_MODE[this.kind] ?? 0; }
}

/** Node's time arguments (`utimes`): a Date, seconds as a number, or a numeric string. */
export function toNs(t: unknown, name: string): bigint {
  if (t instanceof Date) {
    const ms = t.getTime();
    if (!Number.isFinite(ms)) throw invalidArg(name, "must be a valid Date", t, true);
    return BigInt(ms) * NS_PER_MS;
  }
  let sec: number;
  if (typeof t === "number") sec = t;
  else if (typeof t === "string" && t.trim() !== "" && Number.isFinite(Number(t))) sec = Number(t);
  else throw invalidArg(name, "of type number or an instance of Date", t);
  if (!Number.isFinite(sec)) throw invalidArg(name, "must be a finite number", t, true);
  const whole = Math.floor(sec);
  return BigInt(whole) * 1_000_000_000n + BigInt(Math.round((sec - whole) * 1e9));
}

/** Node's mode arguments: a number or an octal string ("755", "0o755"). */
export function toMode(m: unknown, name: string, dflt?: number): number {
  if (m === undefined && dflt !== undefined) return dflt;
  // Node takes any 32-bit value and uses its permission bits
  if (typeof m === "number" && Number.isInteger(m) && m >= 0 && m <= 0xffffffff) return m & 0o7777;
  if (typeof m === "string" && /^(0o)?[0-7]{1,11}$/.test(m)) {
    const v = parseInt(m.replace(/^0o/, ""), 8);
    if (v <= 0xffffffff) return v & 0o7777;
  }
  if (typeof m === "number" || typeof m === "string") {
    throw invalidArg(name, "must be a 32-bit unsigned integer or an octal string", m, true);
  }
  throw invalidArg(name, "of type number or string", m);
}
