/**
 * beneathd for Node.js: every file operation strictly beneath a project root, done by the
 * project's beneathd daemon over its Unix socket.
 *
 *     import { connect, EscapeError } from "beneathd";
 *     const fs = await connect("/run/beneathd/p1.sock");
 *     await fs.writeFile("a/b.txt", "hello"); // atomic
 */
export { BIG_WRITE, Client, connect, MAX_BATCH } from "./client.js";
export type { BatchCall, BatchMethod, BatchOptions, CallOptions, ConnectOptions, Progress, ProgressOptions } from "./client.js";
export { ConnectionLost, EscapeError } from "./errors.js";
export type { PathArg, SystemError } from "./errors.js";
export { FileHandle } from "./filehandle.js";
export { BigIntStats, Dirent, Stats } from "./types.js";
export { Watcher } from "./watch.js";
export type { WatchEvent, WatchKind, WatchOptions } from "./watch.js";
