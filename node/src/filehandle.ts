/**
 * A `FileHandle`-like object over an fd the daemon passed (`fs.promises.FileHandle`'s
 * methods, done with `node:fs` on the number: Node cannot adopt a foreign fd as its own
 * FileHandle). The fd is closed exactly once, by `close()`. An atomic writer's handle
 * publishes on `close()` and publishes nothing on `discard()`.
 */
import * as fs from "node:fs";
import { Readable, Writable } from "node:stream";
import { promisify } from "node:util";

import { abortError, invalidArg } from "./errors.js";
import { closeFds } from "./transport.js";
import { type BigIntStats, type Stats } from "./types.js";

const read = promisify(fs.read);
function write(fd: number, buf: Uint8Array, off: number, len: number, pos: number | null): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}
const fstat = promisify(fs.fstat);
const ftruncate = promisify(fs.ftruncate);
const fsync = promisify(fs.fsync);
const closeFd = promisify(fs.close);

const CHUNK = 8 << 20;

/** Read an fd from its current position to its end. */
export async function readAll(fd: number, signal?: AbortSignal): Promise<Buffer> {
  const st = await fstat(fd);
  const parts: Buffer[] = [];
  let total = 0;
  let size = st.isFile() && st.size > 0 ? st.size + 1 : 64 * 1024; // one more byte: see the end in one read
  const known = st.isFile() && st.size > 0;
  for (;;) {
    if (signal?.aborted) throw abortError(signal);
    const buf = Buffer.allocUnsafe(Math.min(size, CHUNK));
    const { bytesRead } = await read(fd, buf, 0, buf.length, null);
    if (bytesRead === 0) break;
    parts.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
    total += bytesRead;
    // a regular file read short at or past its size is at its end (Node's readFile stops there too)
    if (known && bytesRead < buf.length && total >= st.size) break;
    size = known && total >= st.size ? 64 * 1024 : CHUNK;
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
}

/** Write all of `data` at the fd's position, in chunks (`progress` after each, and once
 * at the end, in the shape the daemon's progress messages have). */
export async function writeAll(fd: number, data: Uint8Array, signal?: AbortSignal,
                               progress?: (p: { entries: number; bytes: number }) => void): Promise<void> {
  let at = 0;
  let last = Date.now();
  while (at < data.length) {
    if (signal?.aborted) throw abortError(signal);
    const n = await write(fd, data, at, Math.min(CHUNK, data.length - at), null);
    at += n;
    if (progress !== undefined && Date.now() - last >= 100) {
      last = Date.now();
      progress({ entries: 0, bytes: at });
    }
  }
  progress?.({ entries: 1, bytes: at });
}

export interface AtomicOps {
  publish(): Promise<void>;
  discard(): Promise<void>;
}

export class FileHandle {
  private closed = false;
  private closing: Promise<void> | null = null;
  /** operations on the fd not finished yet: close() waits for them (as Node's FileHandle
   * does), so the number is never closed under a read or write, nor reused by another fd */
  private inflight = 0;
  private idle: (() => void)[] = [];
  /** aborted by discard(): a long write in flight stops at its next chunk */
  private readonly stop = new AbortController();

  constructor(private readonly _fd: number, private readonly atomic?: AtomicOps) {}

  /** The fd (usable with `node:fs` calls) until `close()`. Do not close it yourself
   * (a stream made with `fs.createReadStream({fd})` needs `autoClose: false`): the
   * handle closes it, once. */
  get fd(): number {
    return this.closed ? -1 : this._fd;
  }

  /** Run an operation on the fd, counted in flight; refused once closing began. */
  async use<T>(op: (fd: number) => Promise<T>): Promise<T> {
    const fd = this.live();
    this.inflight++;
    try {
      return await op(fd);
    } finally {
      if (--this.inflight === 0) for (const wake of this.idle.splice(0)) wake();
    }
  }

  private settled(): Promise<void> {
    return this.inflight === 0 ? Promise.resolve() : new Promise((r) => { this.idle.push(r); });
  }

  async read(buffer?: NodeJS.ArrayBufferView | { buffer?: NodeJS.ArrayBufferView; offset?: number; length?: number;
    position?: number | null }, offset?: number, length?: number, position?: number | null
  ): Promise<{ bytesRead: number; buffer: NodeJS.ArrayBufferView }> {
    let buf: NodeJS.ArrayBufferView;
    if (buffer === undefined || (!ArrayBuffer.isView(buffer) && typeof buffer === "object")) {
      const o = (buffer ?? {}) as { buffer?: NodeJS.ArrayBufferView; offset?: number; length?: number;
        position?: number | null };
      buf = o.buffer ?? Buffer.alloc(16384);
      offset = o.offset;
      length = o.length;
      position = o.position;
    } else {
      buf = buffer;
    }
    const off = offset ?? 0;
    const len = length ?? buf.byteLength - off;
    const { bytesRead } = await this.use((fd) => read(fd, buf as Buffer, off, len, position ?? null));
    return { bytesRead, buffer: buf };
  }

  async write(data: string | NodeJS.ArrayBufferView, offset?: number | null, length?: number | string,
              position?: number | null): Promise<{ bytesWritten: number; buffer: string | NodeJS.ArrayBufferView }> {
    if (typeof data === "string") {
      const b = Buffer.from(data, typeof length === "string" ? length as BufferEncoding : "utf8");
      const n = await this.use((fd) => write(fd, b, 0, b.length, typeof offset === "number" ? offset : null));
      return { bytesWritten: n, buffer: data };
    }
    if (!ArrayBuffer.isView(data)) throw invalidArg("buffer", "an instance of Buffer, TypedArray, or DataView", data);
    const u8 = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const off = offset ?? 0;
    const len = typeof length === "number" ? length : u8.length - off;
    const n = await this.use((fd) => write(fd, u8, off, len, position ?? null));
    return { bytesWritten: n, buffer: data };
  }

  async readFile(options?: { encoding?: BufferEncoding | null; signal?: AbortSignal } | BufferEncoding
  ): Promise<string | Buffer> {
    const o = typeof options === "string" ? { encoding: options } : options ?? {};
    const b = await this.use((fd) => readAll(fd, o.signal));
    return o.encoding ? b.toString(o.encoding) : b;
  }

  async writeFile(data: string | NodeJS.ArrayBufferView, options?: { encoding?: BufferEncoding;
    signal?: AbortSignal; progress?: (p: { entries: number; bytes: number }) => void } | BufferEncoding
  ): Promise<void> {
    const o = typeof options === "string" ? { encoding: options } : options ?? {};
    const b = typeof data === "string" ? Buffer.from(data, o.encoding ?? "utf8")
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const signal = o.signal ? AbortSignal.any([o.signal, this.stop.signal]) : this.stop.signal;
    await this.use((fd) => writeAll(fd, b, signal, o.progress));
  }

  async stat(options?: { bigint?: boolean }): Promise<Stats | BigIntStats> {
    return await this.use((fd) => fstat(fd, { bigint: options?.bigint === true })) as unknown as Stats | BigIntStats;
  }

  async truncate(len = 0): Promise<void> {
    await this.use((fd) => ftruncate(fd, len));
  }

  async sync(): Promise<void> {
    await this.use((fd) => fsync(fd));
  }

  /** Reads from the fd (from `start`, to `end` inclusive); does not close the handle
   * unless `autoClose` (the default, as Node's). */
  createReadStream(options?: { start?: number; end?: number; highWaterMark?: number; encoding?: BufferEncoding;
    autoClose?: boolean }): Readable {
    const fd = this.live();
    const release = this.hold();
    const s = fs.createReadStream("", { fd, start: options?.start, end: options?.end, autoClose: false,
      highWaterMark: options?.highWaterMark, encoding: options?.encoding });
    s.once("close", () => {
      release();
      if (options?.autoClose ?? true) void this.close().catch(() => undefined);
    });
    return s;
  }

  createWriteStream(options?: { start?: number; highWaterMark?: number; autoClose?: boolean }): Writable {
    const fd = this.live();
    const release = this.hold();
    const s = fs.createWriteStream("", { fd, start: options?.start, autoClose: false,
      highWaterMark: options?.highWaterMark });
    let failed = false;
    s.once("error", () => { failed = true; });
    s.once("close", () => {
      release();
      // as Node's: closed at the end, also when it failed; an atomic writer's failed
      // stream publishes nothing
      if (options?.autoClose ?? true) {
        void (failed && this.atomic ? this.discard() : this.close()).catch(() => undefined);
      }
    });
    return s;
  }

  /** Count a stream on the fd as in flight until it closes (close() waits for it). */
  private hold(): () => void {
    this.inflight++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.inflight === 0) for (const wake of this.idle.splice(0)) wake();
    };
  }

  /** Close the fd (once; later calls wait for the first). An atomic writer publishes first:
   * the file appears whole, or the promise rejects (e.g. EEXIST for `exclusive`) and
   * nothing is published. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.settled();
      try {
        if (this.atomic !== undefined) await this.atomic.publish();
      } finally {
        this.closed = true;
        await closeFd(this._fd);
      }
    })();
    return this.closing;
  }

  /** An atomic writer only: publish nothing, and close (after what is in flight). */
  discard(): Promise<void> {
    this.closing ??= (async () => {
      this.stopping = true;
      this.stop.abort();
      await this.settled();
      this.closed = true;
      try {
        await this.atomic?.discard();
      } finally {
        closeFds([this._fd]);
      }
    })();
    return this.closing;
  }

  /** set by discard(): new operations are refused at once */
  private stopping = false;

  private live(): number {
    if (this.closed || this.stopping) {
      const e = new Error("file closed") as Error & { code: string };
      e.code = "EBADF";
      throw e;
    }
    return this._fd;
  }
}
