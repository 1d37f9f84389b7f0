/**
 * A facade with the method names, arguments and results of CoCalc's `SandboxedFilesystem`
 * (cocalc-ai `src/packages/backend/sandbox/index.ts`), done by a beneathd daemon: a backend
 * written against that class can switch by changing its import (and constructing this one
 * from a connected `Client` instead of a host path).
 *
 * Why a facade and not the class itself: CoCalc's class checks each path in this process
 * (realpath, `/proc/self/fd`, inode pinning) and then acts by path, so a symlink swapped in
 * between can still win; beneathd resolves every path in the kernel (`openat2` with
 * `RESOLVE_BENEATH`) in the daemon that acts, so there is no window to win. The facade only
 * translates names, argument shapes and result shapes.
 *
 * Paths are CoCalc's: a path is resolved lexically against "/" the way CoCalc does
 * (`path.posix.resolve("/", p)`), so a leading slash means the sandbox root (never the host's
 * root) and `..` cannot climb above it lexically; `/root/...` is CoCalc's alias of the home
 * (the sandbox root). Symlinks are then resolved by the daemon, physically, beneath the root:
 * one leading out is refused with `EXDEV` (an `EscapeError`), nothing done.
 *
 * What beneathd cannot provide (tool runners, the sync-fs watch service, rootfs/scratch mounts, patch writes)
 * rejects with an Error whose `code` is "ENOSYS" and whose message says why (see SANDBOX.md).
 */
import { constants as fsConstants, futimes } from "node:fs";
import { posix } from "node:path";

import type { Client } from "./client.js";
import { connect, type ConnectOptions } from "./client.js";
import type { Dirent, Stats } from "./types.js";
import type { WatchEvent, Watcher } from "./watch.js";

// ---- CoCalc's shapes (`@cocalc/conat/files/listing`, `@cocalc/conat/files/fs`) ------------

/** `find -printf %y`-style type letters, as CoCalc's `FileTypeLabel`. */
export type FileTypeLabel = "f" | "d" | "l" | "b" | "c" | "s" | "p";

/** One entry of `getListing`, CoCalc's `FileData`: `mtime` in **milliseconds** since the
 * epoch (CoCalc takes `lstat().mtimeMs`), `size` from lstat (a symlink's is its text's
 * length), `isDir`/`isSymLink` only when true, `linkTarget` only for a symlink. */
export interface FileData {
  mtime: number;
  size: number;
  isDir?: boolean;
  isSymLink?: boolean;
  linkTarget?: string;
  type?: FileTypeLabel;
}

/** CoCalc's `Files`: entry name -> data. */
export type Files = { [name: string]: FileData };

/** An entry with its name, as CoCalc's `Listing.iter()` hands them out. */
export type ListingEntry = FileData & { name: string };

/** CoCalc's `CopyOptions` (node's `fs.cp` options plus `reflink` and `timeout`). */
export interface CopyOptions {
  dereference?: boolean;
  errorOnExist?: boolean;
  force?: boolean;
  preserveTimestamps?: boolean;
  recursive?: boolean;
  verbatimSymlinks?: boolean;
  reflink?: boolean;
  timeout?: number;
}

/** CoCalc's `PatchWriteRequest` (a diff-match-patch patch against the file's sha256). */
export interface PatchWriteRequest {
  patch: unknown;
  sha256: string;
  encoding?: "utf8" | "utf-8";
}

export interface WriteFileDeltaOptions {
  baseContents?: string;
  saveLast?: boolean;
  minLength?: number;
}

/** CoCalc's `WatchOptions` (`@cocalc/conat/files/watch`). `maxQueue`, `overflow`, `signal`,
 * `closeOnUnlink` and `stats` are honoured; `patch`, `unique`, `stabilityThreshold` and
 * `pollInterval` are accepted and have no effect (see SANDBOX.md "Watching"). */
export interface WatchOptions {
  maxQueue?: number;
  overflow?: "ignore" | "throw";
  signal?: AbortSignal;
  closeOnUnlink?: boolean;
  stats?: boolean;
  patch?: boolean;
  unique?: boolean;
  stabilityThreshold?: number;
  pollInterval?: number;
}

/** CoCalc's `ChangeEvent`: chokidar's event names; `filename` relative to the watched
 * path, `""` for the path itself; `stats` (an lstat) with the `stats` option, on `add`,
 * `addDir` and `change`. */
export interface ChangeEvent {
  event: "add" | "addDir" | "change" | "unlink" | "unlinkDir";
  filename: string;
  stats?: Stats;
}

/** The daemon holds at most this many events for one watch (its `max_queue` limit). */
const DAEMON_MAX_QUEUE = 65536;

/** CoCalc's `WatchIterator` (an `EventIterator` of `ChangeEvent`s) over a daemon watch of
 * one directory's entries (chokidar's `depth: 0`) or one file: `for await`, `next()`,
 * `end()` (also `close()`, `stop()`), `ended`. */
export class SandboxWatch implements AsyncIterableIterator<ChangeEvent> {
  #ended = false;
  #chain: Promise<unknown> = Promise.resolve();
  readonly #onAbort = (): void => this.end();

  /** @internal Made by `SandboxedFilesystem.watch`. */
  constructor(private readonly w: Watcher, private readonly rel: string, private readonly options: WatchOptions,
              private readonly client: Client) {
    options.signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Ends the watch (in the daemon too); a waiting `next()` gets `done`. */
  end = (): void => {
    if (this.#ended) return;
    this.#ended = true;
    this.options.signal?.removeEventListener("abort", this.#onAbort);
    this.w.close();
  };

  close = this.end;
  stop = this.end;

  /** One call at a time, in order (a `stats` lstat in between must not reorder events). */
  next(): Promise<IteratorResult<ChangeEvent>> {
    const r = this.#chain.then(() => this.step());
    this.#chain = r.catch(() => undefined);
    return r;
  }

  private async step(): Promise<IteratorResult<ChangeEvent>> {
    for (;;) {
      if (this.#ended) return { done: true, value: undefined };
      let r: IteratorResult<WatchEvent>;
      try {
        r = await this.w.next();
      } catch (e) {
        this.end();
        throw e;
      }
      if (r.done) {
        this.end();
        return { done: true, value: undefined };
      }
      const ev = r.value;
      if (ev.kind === "overflow") { // the daemon dropped events (more than maxQueue waited)
        if (this.options.overflow === "throw") {
          this.end();
          throw new Error("maxQueue overflow");
        }
        continue; // "ignore": dropped, as CoCalc's EventIterator drops them
      }
      const top = ev.path === this.rel;
      const x = this.change(ev, top);
      if (x === null) continue;
      if (this.options.stats === true && x.event !== "unlink" && x.event !== "unlinkDir") {
        try {
          x.stats = (await this.client.lstat(ev.path)) as Stats;
        } catch {
          // gone again by now: the event without its stats (chokidar's would have none either)
        }
      }
      if (this.options.closeOnUnlink === true && top && (x.event === "unlink" || x.event === "unlinkDir")) {
        this.end(); // this last event is still handed out
      }
      return { done: false, value: x };
    }
  }

  /** The daemon's kind as chokidar names it; null for what chokidar does not report (a
   * directory's own changes). A watched file replaced whole at its name (an atomic save,
   * as beneathd's writeFile does) is a "change", as chokidar's `atomic` option reports it. */
  private change(ev: WatchEvent, top: boolean): ChangeEvent | null {
    const filename = top ? "" : ev.filename as string;
    switch (ev.kind) {
      case "created":
        return { event: ev.isDir ? "addDir" : "add", filename };
      case "moved_to":
        return { event: ev.isDir ? "addDir" : top ? "change" : "add", filename };
      case "deleted":
      case "moved_from":
        return { event: ev.isDir ? "unlinkDir" : "unlink", filename };
      default: // modified, attrib
        return ev.isDir ? null : { event: "change", filename };
    }
  }

  return(): Promise<IteratorResult<ChangeEvent>> {
    this.end();
    return Promise.resolve({ done: true, value: undefined });
  }

  throw(err?: unknown): Promise<IteratorResult<ChangeEvent>> {
    this.end();
    return Promise.reject(err);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** CoCalc's constructor options. `readonly`, the link policy and `unsafeMode` (which, as in
 * CoCalc, only lifts the link policy here: beneathd has no unconfined mode) are honoured;
 * `host` and `rusticRepo` are kept for the tool runners, which are not provided; `rootfs`
 * and `scratch` cannot be (the daemon serves one root) and make the constructor throw. */
export interface Options {
  unsafeMode?: boolean;
  readonly?: boolean;
  rootfs?: string;
  scratch?: string;
  host?: string;
  rusticRepo?: string;
  allowSafeModeHardlink?: boolean;
  allowSafeModeSymlink?: boolean;
}

type MkdirOptions = { recursive?: boolean; mode?: number | string } | number | string;
type RmOptions = { recursive?: boolean; force?: boolean };
type ReadEncoding = BufferEncoding | { encoding?: BufferEncoding | null; flag?: string } | null;
type AppendEncoding = BufferEncoding | { encoding?: BufferEncoding | null; mode?: number | string } | null;
type ReaddirOptions = { withFileTypes?: boolean; recursive?: boolean; encoding?: BufferEncoding } | BufferEncoding;
type Time = number | string | Date;

/** Errors in CoCalc's `SandboxError` shape (`code`, `errno`, `syscall`, `path`). */
export class SandboxError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path: string;

  constructor(message: string, { code, errno, syscall, path }: { code: string; errno: number; syscall: string; path: string }) {
    super(message);
    this.name = "SandboxError";
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    this.path = path;
  }
}

/** What beneathd does not provide: `code` "ENOSYS" (errno -38), so a caller can tell it
 * from a file-system error and fall back. */
function unsupported(method: string, why: string, path = ""): SandboxError {
  return new SandboxError(`ENOSYS: ${method} is not provided by the beneathd facade: ${why}`,
    { code: "ENOSYS", errno: -38, syscall: method, path });
}

/** The error the client raises for the BigInt times of `utimes` (its msgpack encoder has no
 * `useBigInt64`): a plain Error with no `code`, which is how it is told apart from a real
 * failure. See SANDBOX.md "Known client bug". */
function isBigIntEncodingError(e: unknown): boolean {
  return e instanceof Error && (e as { code?: unknown }).code === undefined && /BigInt/.test(e.message);
}

const HOME_ROOT = "/root";

const TYPE_LABEL: Record<string, FileTypeLabel> = {
  file: "f", dir: "d", symlink: "l", block: "b", char: "c", socket: "s", fifo: "p",
};

/** A path as the daemon takes it, and whether the caller used CoCalc's `/root` alias (for
 * `realpath`, which answers in the caller's form). */
interface Resolved {
  rel: string;
  homeAlias: boolean;
}

/** CoCalc's entries with their names (the shape of `Listing.iter()`'s values). */
export function listingEntries(files: Files): ListingEntry[] {
  return Object.entries(files).map(([name, data]) => ({ name, ...data }));
}

export class SandboxedFilesystem {
  public readonly unsafeMode: boolean;
  public readonly readonly: boolean;
  public readonly allowSafeModeHardlink: boolean;
  public readonly allowSafeModeSymlink: boolean;
  public readonly host: string;
  public readonly rusticRepo?: string;
  /** CoCalc's `readFile(path, encoding, lock)` locks, by sandbox-relative path: a lock is
   * this process's (as CoCalc's is its own), not the daemon's. */
  private readonly readFileLock = new Map<string, NodeJS.Timeout>();

  constructor(public readonly client: Client, options: Options = {}) {
    if (options.rootfs !== undefined) {
      throw unsupported("rootfs", "the daemon serves exactly one root; absolute paths are relative to it");
    }
    if (options.scratch !== undefined) {
      throw unsupported("scratch", "the daemon serves exactly one root; run a second daemon for /scratch");
    }
    this.unsafeMode = options.unsafeMode === true;
    this.readonly = options.readonly === true;
    this.allowSafeModeHardlink = options.allowSafeModeHardlink === true;
    this.allowSafeModeSymlink = options.allowSafeModeSymlink === true;
    this.host = options.host ?? "global";
    this.rusticRepo = options.rusticRepo;
  }

  // ---- paths and policy (private) --------------------------------------------------------

  /** CoCalc's path rule, lexically (symlinks are the daemon's business): resolve against
   * "/", `/root[/...]` is the home, `/scratch` needs a scratch mount we cannot have. */
  private resolve(path: string, method: string): Resolved {
    if (typeof path !== "string") {
      throw new TypeError(`path must be a string but is of type ${typeof path}`);
    }
    const abs = posix.resolve("/", path);
    const isAbs = path.startsWith("/");
    if (isAbs && (abs === "/scratch" || abs.startsWith("/scratch/"))) {
      throw unsupported(method, `no scratch mount; cannot access absolute path '${abs}'`, path);
    }
    const homeAlias = isAbs && (abs === HOME_ROOT || abs.startsWith(`${HOME_ROOT}/`));
    const rel = homeAlias ? abs.slice(HOME_ROOT.length + 1) : abs.slice(1);
    return { rel: rel === "" ? "." : rel, homeAlias };
  }

  private rel(path: string, method: string): string {
    return this.resolve(path, method).rel;
  }

  /** `readonly`: refused here, before the daemon is asked (CoCalc's message and shape). */
  private assertWritable(path: string): void {
    if (this.readonly) {
      throw new SandboxError(`EACCES: permission denied -- read only filesystem, open '${path}'`,
        { errno: -13, code: "EACCES", syscall: "open", path });
    }
  }

  /** CoCalc refuses to create links in safe mode unless allowed; kept so that switching
   * changes nothing by itself (with beneathd, enabling them is safe: links resolve beneath). */
  private assertLinkPolicy(kind: "link" | "symlink", path: string): void {
    if (this.unsafeMode) return;
    if (kind === "link" ? this.allowSafeModeHardlink : this.allowSafeModeSymlink) return;
    throw new SandboxError(`EPERM: operation not permitted in safe mode, ${kind} '${path}'`,
      { errno: -1, code: "EPERM", syscall: kind, path });
  }

  /** The daemon's chmod/utime act on the final component itself (a symlink: ENOTSUP / the
   * link's times); Node and CoCalc follow it. Resolving first follows in-tree links, and a
   * link swapped in afterwards is still confined by the daemon. */
  private async target(rel: string): Promise<string> {
    return (await this.client.realpath(rel)) as string;
  }

  // ---- metadata --------------------------------------------------------------------------
  // Arrow properties, as CoCalc's: callers (conat's fsServer) may pass them around unbound.

  stat = async (path: string): Promise<Stats> => {
    return (await this.client.stat(this.rel(path, "stat"))) as Stats;
  };

  lstat = async (path: string): Promise<Stats> => {
    return (await this.client.lstat(this.rel(path, "lstat"))) as Stats;
  };

  /** False when missing; an escaping link throws EXDEV (CoCalc throws "outside of sandbox"). */
  exists = async (path: string): Promise<boolean> => {
    return await this.client.exists(this.rel(path, "exists"));
  };

  constants = async (): Promise<{ [key: string]: number }> => {
    return { ...fsConstants } as { [key: string]: number };
  };

  readlink = async (path: string): Promise<string> => {
    return (await this.client.readlink(this.rel(path, "readlink"))) as string;
  };

  /** Sandbox-relative, as CoCalc's: "" for the root, "/root/..." when asked with the alias. */
  realpath = async (path: string): Promise<string> => {
    const { rel, homeAlias } = this.resolve(path, "realpath");
    const r = (await this.client.realpath(rel)) as string;
    const inTree = r === "." ? "" : r;
    if (homeAlias) return inTree === "" ? HOME_ROOT : `${HOME_ROOT}/${inTree}`;
    return inTree;
  };

  /** Names, or beneathd Dirents (`name`, `parentPath` as the caller's path, `is*()`, plus
   * `linkTarget` and `stats`) with `withFileTypes`. */
  readdir = async (path: string, options?: ReaddirOptions): Promise<string[] | Dirent[]> => {
    return (await this.client.readdir(this.rel(path, "readdir"), options)) as string[] | Dirent[];
  };

  /** CoCalc's listing: `{files: {name: FileData}, truncated: false}`, from one scandir (the
   * daemon sends each entry's lstat and link text with it); an entry whose lstat did not
   * come is lstat'ed here, and skipped if it vanished meanwhile (as CoCalc does). */
  getListing = async (path: string): Promise<{ files: Files; truncated?: boolean }> => {
    const rel = this.rel(path, "getListing");
    const entries = (await this.client.readdir(rel, { withFileTypes: true })) as Dirent[];
    const files: Files = {};
    for (const e of entries) {
      const name = e.name as string;
      let st: Stats | null = e.stats;
      if (st === null) {
        try {
          st = (await this.client.lstat(rel === "." ? name : `${rel}/${name}`)) as Stats;
        } catch (err) {
          if ((err as { code?: string }).code === "ENOENT") continue;
          throw err;
        }
      }
      const type: FileTypeLabel = TYPE_LABEL[e.kind] ?? "f";
      const data: FileData = { mtime: st.mtimeMs, size: st.size, type };
      if (type === "l") {
        data.isSymLink = true;
        if (e.linkTarget !== null) data.linkTarget = e.linkTarget as string;
      }
      if (type === "d") data.isDir = true;
      files[name] = data;
    }
    return { files, truncated: false };
  };

  // ---- contents --------------------------------------------------------------------------

  /** `lock` (ms): any other read of this path through this facade within that time
   * rejects with code "LOCK" (CoCalc's one-winner initialisation of sync clients). */
  readFile = async (path: string, encoding?: ReadEncoding, lock?: number): Promise<string | Buffer> => {
    const rel = this.rel(path, "readFile");
    if (this.readFileLock.has(rel)) {
      throw Object.assign(new Error(`path is locked - ${rel}`), { code: "LOCK" });
    }
    if (lock) this.setLock(rel, lock);
    return await this.client.readFile(rel, encoding ?? undefined);
  };

  lockFile = async (path: string, lock?: number): Promise<void> => {
    this.setLock(this.rel(path, "lockFile"), lock);
  };

  private setLock(rel: string, lock?: number): void {
    const old = this.readFileLock.get(rel);
    if (old !== undefined) clearTimeout(old);
    this.readFileLock.delete(rel);
    if (!lock) return;
    const timer = setTimeout(() => this.readFileLock.delete(rel), lock);
    timer.unref(); // a lock must not keep the process alive
    this.readFileLock.set(rel, timer);
  }

  /** Atomic replace (a temporary file renamed over the name): readers see the old or the
   * new contents, never a mix; an existing file keeps its mode. `saveLast` is accepted and
   * has no effect (it feeds CoCalc's watcher, which is not provided). A patch request
   * (`{patch, sha256}`) needs CoCalc's diff-match-patch: ENOSYS, send the whole file. */
  writeFile = async (path: string, data: string | Buffer | Uint8Array | PatchWriteRequest,
                     saveLast?: boolean): Promise<void> => {
    void saveLast;
    const rel = this.rel(path, "writeFile");
    this.assertWritable(path);
    if (typeof data !== "string" && !ArrayBuffer.isView(data)) {
      throw unsupported("writeFile", "patch writes ({patch, sha256}) need CoCalc's diff-match-patch; write the whole contents", path);
    }
    await this.client.writeFile(rel, data);
  };

  /** CoCalc sends a patch when it can; the result on disk is `content` either way, so this
   * writes `content` whole (atomically), which also needs no base to match. */
  writeFileDelta = async (path: string, content: string | Buffer, options?: WriteFileDeltaOptions): Promise<void> => {
    await this.writeFile(path, content, options?.saveLast);
  };

  /** O_APPEND, created if missing; not atomic (as Node's and CoCalc's). */
  appendFile = async (path: string, data: string | Buffer, encoding?: AppendEncoding): Promise<void> => {
    const rel = this.rel(path, "appendFile");
    this.assertWritable(path);
    await this.client.appendFile(rel, data, encoding ?? undefined);
  };

  truncate = async (path: string, len = 0): Promise<void> => {
    const rel = this.rel(path, "truncate");
    this.assertWritable(path);
    await this.client.truncate(rel, len ?? 0);
  };

  // ---- namespace -------------------------------------------------------------------------

  /** Node's options: a mode (number or octal string, "755" / "0o755") or
   * `{recursive, mode}`. Resolves to nothing, as CoCalc's. */
  mkdir = async (path: string, options?: MkdirOptions): Promise<void> => {
    const rel = this.rel(path, "mkdir");
    this.assertWritable(path);
    const o = typeof options === "string" ? options.trim()
      : typeof options === "object" && options !== null && typeof options.mode === "string"
        ? { ...options, mode: options.mode.trim() } : options;
    await this.client.mkdir(rel, o);
  };

  unlink = async (path: string): Promise<void> => {
    const rel = this.rel(path, "unlink");
    this.assertWritable(path);
    await this.client.unlink(rel);
  };

  /** `{recursive: true}` is `rm -r` (not forced), as CoCalc routes it. */
  rmdir = async (path: string, options?: { recursive?: boolean }): Promise<void> => {
    const rel = this.rel(path, "rmdir");
    this.assertWritable(path);
    if (options?.recursive === true) {
      await this.client.rm(rel, { recursive: true, force: false });
      return;
    }
    await this.client.rmdir(rel);
  };

  /** One path or several; each removed in turn (CoCalc starts them all at once; in turn
   * makes the outcome of overlapping paths deterministic). Never follows a symlink. */
  rm = async (path: string | string[], options?: RmOptions): Promise<void> => {
    const paths = typeof path === "string" ? [path] : path;
    const rels = paths.map((p) => this.rel(p, "rm"));
    for (const p of paths) this.assertWritable(p);
    for (const rel of rels) {
      await this.client.rm(rel, { recursive: options?.recursive === true, force: options?.force === true });
    }
  };

  rename = async (oldPath: string, newPath: string): Promise<void> => {
    const [a, b] = [this.rel(oldPath, "rename"), this.rel(newPath, "rename")];
    this.assertWritable(newPath);
    await this.client.rename(a, b);
  };

  /** fs-extra's `move`: `dest` is the new name; `overwrite` false (the default) refuses an
   * existing one (EEXIST); across mounts inside the root, copy then remove. An array of
   * sources is moved INTO `dest` (each as `dest/basename(src)`), as the conat
   * `Filesystem.move` type allows. */
  move = async (src: string | string[], dest: string, options?: { overwrite?: boolean }): Promise<void> => {
    const d = this.rel(dest, "move");
    this.assertWritable(dest);
    const overwrite = options?.overwrite === true;
    if (typeof src === "string") {
      await this.client.move(this.rel(src, "move"), d, { overwrite });
      return;
    }
    const rels = src.map((s) => this.rel(s, "move"));
    for (const s of rels) await this.client.move(s, posix.join(d, posix.basename(s)), { overwrite });
  };

  copyFile = async (src: string, dest: string): Promise<void> => {
    const [s, d] = [this.rel(src, "copyFile"), this.rel(dest, "copyFile")];
    this.assertWritable(dest);
    await this.client.copyFile(s, d);
  };

  /** CoCalc's cp: the parent of `dest` is created if missing; a string `src` is node's
   * `cp(src, dest)` (`dest` names the copy); an array is copied INTO the directory `dest`
   * (`dest/basename(src)` each, like /usr/bin/cp). `recursive` is needed for a directory,
   * as in node. `force` (default true) / `errorOnExist` / `preserveTimestamps` are honoured
   * for files too (CoCalc's file branch ignores them), `timeout` (ms) cancels the copy in
   * the daemon; `reflink` and `verbatimSymlinks` are accepted (beneathd always copies inner
   * links verbatim and picks reflinks itself); `dereference: true` is ENOSYS. */
  cp = async (src: string | string[], dest: string, options?: CopyOptions): Promise<void> => {
    const d = this.rel(dest, "cp");
    this.assertWritable(dest);
    if (options?.dereference === true) {
      throw unsupported("cp", "dereference: the daemon copies links inside a tree as links", dest);
    }
    const sources = (typeof src === "string" ? [src] : src).map((s) => this.rel(s, "cp"));
    const parent = posix.dirname(d);
    if (parent !== "." && !(await this.client.exists(parent))) {
      await this.client.mkdir(parent, { recursive: true });
    }
    const o = {
      recursive: options?.recursive === true, force: options?.force ?? true,
      errorOnExist: options?.errorOnExist === true, preserveTimestamps: options?.preserveTimestamps === true,
      timeout: options?.timeout,
    };
    if (typeof src === "string") {
      await this.client.cp(sources[0]!, d, o);
      return;
    }
    for (const s of sources) await this.client.cp(s, posix.join(d, posix.basename(s)), o);
  };

  /** Hard link (the daemon never follows `existingPath`); subject to the link policy. */
  link = async (existingPath: string, newPath: string): Promise<void> => {
    const [a, b] = [this.rel(existingPath, "link"), this.rel(newPath, "link")];
    this.assertWritable(newPath);
    this.assertLinkPolicy("link", newPath);
    await this.client.link(a, b);
  };

  /** CoCalc reads `target` as a sandbox path (and stores the host's absolute path of it);
   * here the link gets the same meaning as a RELATIVE target (from the link's directory to
   * `target`), so it resolves beneath the root and leaks no host path. */
  symlink = async (target: string, path: string): Promise<void> => {
    const [t, p] = [this.rel(target, "symlink"), this.rel(path, "symlink")];
    this.assertWritable(path);
    this.assertLinkPolicy("symlink", path);
    const text = posix.relative(posix.dirname(p), t) || ".";
    await this.client.symlink(text, p);
  };

  /** Mode as a number or an octal string; follows an in-tree symlink (as Node's chmod). */
  chmod = async (path: string, mode: string | number): Promise<void> => {
    const rel = this.rel(path, "chmod");
    this.assertWritable(path);
    await this.client.chmod(await this.target(rel), typeof mode === "string" ? mode.trim() : mode);
  };

  /** Times as a Date, seconds (number) or numeric string; follows an in-tree symlink (as
   * Node's utimes). While the client cannot encode the nanosecond times it sends (see
   * SANDBOX.md), a regular file's times are set here with futimes on an fd the daemon opened
   * beneath the root; other file types then reject with ENOSYS. */
  utimes = async (path: string, atime: Time, mtime: Time): Promise<void> => {
    const rel = this.rel(path, "utimes");
    this.assertWritable(path);
    const t = await this.target(rel);
    try {
      await this.client.utimes(t, atime, mtime);
      return;
    } catch (e) {
      if (!isBigIntEncodingError(e)) throw e;
    }
    const st = (await this.client.stat(t)) as Stats;
    if (!st.isFile()) {
      throw unsupported("utimes", "the client cannot send times yet (BigInt encoding); only regular files work, through an fd", path);
    }
    const fh = await this.client.open(t, "r");
    try {
      await new Promise<void>((resolve, reject) => {
        futimes(fh.fd, atime, mtime, (err) => (err ? reject(err) : resolve()));
      });
    } finally {
      await fh.close();
    }
  };

  // ---- what beneathd does not provide -----------------------------------------------------

  // ---- watching --------------------------------------------------------------------------

  /** CoCalc's watch: resolves once the daemon has the watch in place, with an iterator of
   * `{event, filename, stats?}` for the entries of a directory (not below, as CoCalc's
   * `depth: 0`) or for one file. The daemon watches through fds it opened beneath the
   * root, so a directory renamed out of the root reports nothing from outside. A missing
   * path rejects (ENOENT), a link leading out rejects with EXDEV. */
  watch = async (path: string, options: WatchOptions = {}): Promise<SandboxWatch> => {
    const rel = this.rel(path, "watch");
    const maxQueue = Math.min(Math.max(Math.trunc(options.maxQueue ?? 2048), 1), DAEMON_MAX_QUEUE);
    const w = this.client.watch(rel, { recursive: false, maxQueue });
    const it = new SandboxWatch(w, rel, options, this.client);
    if (options.signal?.aborted) {
      it.end();
      return it;
    }
    try {
      await w.ready;
    } catch (e) {
      it.end();
      if (options.signal?.aborted) return it; // aborted while it was set up: ended, as CoCalc's
      throw e;
    }
    return it;
  };

  /** CoCalc's sync-fs heartbeat feeds its own watcher service (a process-wide registry of
   * shared watches), which is not part of this facade; `watch()` is. */
  syncFsWatch = async (path: string, _active?: boolean, _info?: unknown): Promise<never> => {
    throw unsupported("syncFsWatch", "it feeds CoCalc's sync-fs watcher service; use watch()", path);
  };

  /** The tool runners spawn host binaries on host paths, which is what beneathd exists to
   * avoid: the daemon has no exec method. (`Client.walk` and `Client.du` cover listing and
   * disk usage natively.) */
  find = async (path: string, _options?: unknown): Promise<never> => {
    throw unsupported("find", "the daemon runs no programs; use client.walk()", path);
  };

  fd = async (path: string, _options?: unknown): Promise<never> => {
    throw unsupported("fd", "the daemon runs no programs; use client.walk()", path);
  };

  ripgrep = async (path: string, _pattern?: string, _options?: unknown): Promise<never> => {
    throw unsupported("ripgrep", "the daemon runs no programs", path);
  };

  dust = async (path: string, _options?: unknown): Promise<never> => {
    throw unsupported("dust", "the daemon runs no programs; client.du() gives the total", path);
  };

  ouch = async (_args: string[], _options?: unknown): Promise<never> => {
    throw unsupported("ouch", "the daemon runs no programs");
  };

  rustic = async (_args: string[], _options?: unknown): Promise<never> => {
    throw unsupported("rustic", "the daemon runs no programs");
  };
}

/** Connect to the daemon at `socketPath` and wrap the client (CoCalc's constructor took a
 * host path; the daemon's socket is the capability here). */
export async function sandboxedFilesystem(socketPath: string, options?: Options & ConnectOptions
): Promise<SandboxedFilesystem> {
  const client = await connect(socketPath, options?.timeout !== undefined ? { timeout: options.timeout } : undefined);
  try {
    return new SandboxedFilesystem(client, options);
  } catch (e) {
    await client.close();
    throw e;
  }
}

