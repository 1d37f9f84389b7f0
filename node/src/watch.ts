/**
 * `Client.watch`: the daemon's watch stream (PROTOCOL.md "Streams", result kind `watch`)
 * as an async iterator shaped like Node's `fs.promises.watch`.
 *
 * The request goes out when `watch()` is called. The daemon's first page is empty and
 * means the watch is in place (`ready` resolves); a setup error (ENOENT, EscapeError,
 * ENOSPC) is the final reply instead (`ready` and the first `next()` reject with it). Each
 * later page is a list of `[kind, path, is_dir, cookie]`, paced by credit like a walk: a
 * page is taken back (`more`) when it is taken to be handed out, so at most 4 pages wait
 * here and the daemon's own queue (`maxQueue`, then one `overflow` event) bounds the rest.
 * The daemon ends the stream with a nil reply when the watched top was deleted or moved
 * (its last event says so), or with an error; the client ends it with the cancel.
 */
import { abortError, invalidArg, systemError, type PathArg } from "./errors.js";
import { echo, type Encoding } from "./types.js";

/** The daemon's event kinds (DESIGN.md "Watch"). */
export type WatchKind = "created" | "modified" | "attrib" | "deleted" | "moved_from" | "moved_to" | "overflow";

const KINDS: ReadonlySet<string> = new Set<WatchKind>(
  ["created", "modified", "attrib", "deleted", "moved_from", "moved_to", "overflow"]);

export interface WatchOptions {
  /** watch the whole tree below `path`, following new directories (default true, the
   * daemon's default; Node's is false). A file is watched alone either way. */
  recursive?: boolean;
  /** events the daemon holds for this watch before it replaces them with one `overflow`
   * event (default 4096, at most 65536) */
  maxQueue?: number;
  /** ends the watch in the daemon; the iteration rejects with an AbortError (as Node's) */
  signal?: AbortSignal;
  /** milliseconds for the watch to be in place (`ready`); none once it is. Defaults to
   * the client's `timeout` */
  timeout?: number;
  /** `"buffer"` gives Buffers for `filename` and `path` (as does a Buffer `path`);
   * otherwise strings in this encoding (utf8) */
  encoding?: Encoding;
}

/** One event: Node's `{eventType, filename}` and the daemon's own fields. */
export interface WatchEvent {
  /** `"change"` for `modified`/`attrib`, `"rename"` for the others (as Node's) */
  eventType: "rename" | "change";
  /** relative to the watched path (as Node's); the watched path itself (and `overflow`)
   * is named by the watched path's last component, as Node names it */
  filename: string | Buffer;
  kind: WatchKind;
  /** relative to the root, under the watched path as the caller spelled it: what the
   * daemon sent */
  path: string | Buffer;
  isDir: boolean;
  /** pairs a `moved_from` with its `moved_to` (0 for other kinds) */
  cookie: number;
}

/** What the client gives a watcher: the call's credit and cancel (both no-ops once the
 * call is over). */
export interface WatchLink {
  more(): void;
  cancel(): void;
}

interface Waiter {
  resolve: (r: IteratorResult<WatchEvent>) => void;
  reject: (e: Error) => void;
}

const DONE: IteratorResult<WatchEvent> = { done: true, value: undefined };

/** `path` without trailing slashes, as the daemon names the watched top in events. */
function top(b: Buffer): Buffer {
  let n = b.length;
  while (n > 1 && b[n - 1] === 0x2f) n--;
  return b.subarray(0, n);
}

/**
 * A watch in flight: `for await (const ev of w)`, `await w.ready`, `w.close()`.
 * Leaving the loop (`return()`), `close()` or the signal cancels it in the daemon.
 */
export class Watcher implements AsyncIterableIterator<WatchEvent> {
  /** Resolves once the daemon has the watch in place (events from then on are seen);
   * rejects with the setup error (ENOENT, EscapeError, ENOSPC, an AbortError, ETIMEDOUT)
   * or if the watch is closed first. Never an unhandled rejection by itself. */
  readonly ready: Promise<void>;
  private readyResolve!: () => void;
  private readyReject!: (e: Error) => void;
  private readySettled = false;
  private state: "setup" | "live" | "over" = "setup";
  /** pages received and not yet taken (each took one credit) */
  private readonly pages: WatchEvent[][] = [];
  private current: WatchEvent[] = [];
  private at = 0;
  private readonly waiters: Waiter[] = [];
  /** the final reply came (or the call was given up): nothing more arrives */
  private finished = false;
  /** what the iteration rejects with once the events before it are handed out */
  private failure: Error | null = null;
  private link: WatchLink | null = null;
  private timer: NodeJS.Timeout | undefined;
  private readonly onAbort: () => void;
  private readonly disp: Buffer;
  private readonly base: Buffer;

  /** @internal Made by `Client.watch`. */
  constructor(shown: PathArg, wire: Buffer, private readonly asBuffer: boolean,
              private readonly encoding: Encoding, private readonly signal: AbortSignal | undefined,
              setupTimeout: number | undefined) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    this.ready.catch(() => undefined); // awaiting it still rejects; not awaiting it is fine
    this.disp = top(wire);
    const slash = this.disp.lastIndexOf(0x2f);
    this.base = slash >= 0 && slash < this.disp.length - 1 ? this.disp.subarray(slash + 1) : this.disp;
    this.onAbort = () => this.abort();
    if (signal !== undefined) {
      if (signal.aborted) {
        this.fail(abortError(signal), false);
      } else {
        signal.addEventListener("abort", this.onAbort, { once: true });
      }
    }
    if (setupTimeout !== undefined && this.state === "setup") {
      this.timer = setTimeout(() => this.fail(systemError("ETIMEDOUT", "watch", shown, undefined,
        `the watch was not in place within ${setupTimeout} ms (cancelled in the daemon)`), true), setupTimeout);
    }
  }

  /** @internal The call went out (or was refused: `outcome` rejects at once). */
  attach(link: WatchLink, outcome: Promise<unknown>): void {
    this.link = link;
    if (this.state === "over") { // aborted before it was sent, or closed meanwhile
      link.cancel();
      outcome.catch(() => undefined);
      return;
    }
    outcome.then(() => {
      this.finished = true;
      this.end(null);
    }, (e: Error) => {
      this.finished = true;
      this.end(e);
    });
  }

  /** @internal An intermediate message of the call (the client's `onPartial`). */
  page(kind: string, data: unknown): void {
    if (kind !== "watch" || this.state === "over") return;
    if (!Array.isArray(data)) throw new TypeError("beneathd: malformed watch page");
    const events = data.map((e) => this.event(e));
    if (this.state === "setup") { // the first page: the watch is in place
      this.state = "live";
      this.clearTimer();
      this.settle(null);
      this.link?.more(); // taken at once: it holds nothing to hand out
      if (events.length > 0) this.pages.push(events);
      this.pump();
      return;
    }
    this.pages.push(events);
    this.pump();
  }

  private event(e: unknown): WatchEvent {
    if (!Array.isArray(e) || e.length !== 4) throw new TypeError("beneathd: malformed watch event");
    const [kind, path, isDir, cookie] = e as [unknown, unknown, unknown, unknown];
    if (typeof kind !== "string" || !KINDS.has(kind) || !(path instanceof Uint8Array) || typeof isDir !== "boolean"
        || (typeof cookie !== "number" && typeof cookie !== "bigint")) {
      throw new TypeError("beneathd: malformed watch event");
    }
    const p = Buffer.from(path.buffer, path.byteOffset, path.byteLength);
    return {
      eventType: kind === "modified" || kind === "attrib" ? "change" : "rename",
      filename: this.conv(this.relative(p)),
      kind: kind as WatchKind,
      path: this.conv(p),
      isDir,
      cookie: Number(cookie),
    };
  }

  /** An event's path below the watched path (the daemon names it `top/...`, or just the
   * names under "."); the top itself by its last component, as Node does. */
  private relative(p: Buffer): Buffer {
    const d = this.disp;
    if (p.equals(d)) return this.base;
    if (d.length === 1 && d[0] === 0x2e) return p;
    if (p.length > d.length + 1 && p[d.length] === 0x2f && p.subarray(0, d.length).equals(d)) {
      return p.subarray(d.length + 1);
    }
    return p;
  }

  private conv(b: Buffer): string | Buffer {
    return echo(b, this.asBuffer, this.encoding);
  }

  /** Hand out what is there to whoever waits. */
  private pump(): void {
    while (this.waiters.length > 0) {
      if (this.at >= this.current.length) {
        const next = this.pages.shift();
        if (next !== undefined) {
          this.current = next;
          this.at = 0;
          if (!this.finished) this.link?.more(); // one page of credit back as it is taken
          continue;
        }
        if (this.state !== "over") return; // more will come
        const w = this.waiters.shift()!;
        const f = this.failure;
        if (f !== null) {
          this.failure = null; // once, then done (as Node's)
          w.reject(f);
        } else {
          w.resolve(DONE);
        }
        continue;
      }
      const ev = this.current[this.at++]!;
      this.waiters.shift()!.resolve({ done: false, value: ev });
    }
  }

  private settle(error: Error | null): void {
    if (this.readySettled) return;
    this.readySettled = true;
    if (error !== null) this.readyReject(error);
    else this.readyResolve(); // (a nil reply without the first page: no daemon sends it)
  }

  /** The stream is over (the daemon's final reply, or the call given up): events that
   * came before it are still handed out, then the error, if any. */
  private end(error: Error | null): void {
    if (this.state === "over") return;
    this.settle(error);
    this.state = "over";
    this.failure = error;
    this.clearTimer();
    this.signal?.removeEventListener("abort", this.onAbort);
    this.pump();
  }

  /** Drop what was not handed out yet (as Node's watch does on abort). */
  private drop(): void {
    this.pages.length = 0;
    this.current = [];
    this.at = 0;
  }

  /** Stop here with `error` (dropping what waits) and cancel the watch in the daemon. */
  private fail(error: Error, cancel: boolean): void {
    if (this.state === "over") return;
    this.drop();
    if (cancel) this.link?.cancel();
    this.end(error);
  }

  private abort(): void {
    this.fail(abortError(this.signal!), true);
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The next event; `{done: true}` once the watch has ended (its top was deleted or
   * moved away, or it was closed); rejects once with what ended it otherwise. */
  next(): Promise<IteratorResult<WatchEvent>> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.pump();
    });
  }

  /** Ends the watch (the cancel goes out at once); waiting and later `next()` calls get
   * `done`, and `ready`, if still waiting, rejects with an AbortError. */
  close(): void {
    if (this.state !== "over") {
      this.settle(abortError(AbortSignal.abort(new Error("the watch was closed"))));
      this.drop();
      this.link?.cancel();
      this.end(null);
    }
    this.failure = null;
    this.drop();
    this.pump();
  }

  /** `for await` calls this when the loop is left early: the watch ends. */
  return(): Promise<IteratorResult<WatchEvent>> {
    this.close();
    return Promise.resolve(DONE);
  }

  throw(err?: unknown): Promise<IteratorResult<WatchEvent>> {
    this.close();
    return Promise.reject(err);
  }

  /** Whether the watch is over (ended by the daemon, or closed). */
  get closed(): boolean {
    return this.state === "over";
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** Node's checks of `watch`'s options (before anything is sent). */
export function checkWatchOptions(o: WatchOptions): void {
  if (o.recursive !== undefined && typeof o.recursive !== "boolean") {
    throw invalidArg("options.recursive", "of type boolean", o.recursive);
  }
  if (o.maxQueue !== undefined) {
    if (typeof o.maxQueue !== "number") throw invalidArg("options.maxQueue", "of type number", o.maxQueue);
    if (!Number.isInteger(o.maxQueue) || o.maxQueue < 1) {
      throw invalidArg("options.maxQueue", "must be an integer >= 1", o.maxQueue, true);
    }
  }
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) {
    throw invalidArg("options.signal", "an instance of AbortSignal", o.signal);
  }
  if (o.timeout !== undefined && (typeof o.timeout !== "number" || !(o.timeout > 0))) {
    throw invalidArg("options.timeout", "must be > 0", o.timeout, true);
  }
}
