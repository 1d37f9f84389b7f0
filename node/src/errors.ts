/**
 * Errors in Node's own shape: a system error has `code` ("ENOENT"), a negative `errno`,
 * `syscall`, `path` (and `dest`) as the caller gave them, and the message Node writes,
 * `"ENOENT: no such file or directory, stat 'a/x'"`, with libuv's texts. The daemon's
 * absolute root never appears: it never sends it, and the paths are the caller's own.
 */
import { getSystemErrorMap } from "node:util";

import { STRERROR } from "./methods.js";

/** errno (negative, as Node has it) -> [code, libuv's text] */
const SYSTEM: Map<number, [string, string]> = getSystemErrorMap();
const BY_CODE = new Map<string, number>();
for (const [num, [code]] of SYSTEM) BY_CODE.set(code, num);
for (const [num, [code]] of STRERROR) if (!BY_CODE.has(code)) BY_CODE.set(code, -num);

export type PathArg = string | Buffer | Uint8Array;

export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: PathArg;
  dest?: PathArg;
}

function show(p: PathArg): string {
  return typeof p === "string" ? p : Buffer.from(p).toString("utf8");
}

function describe(num: number, code: string, daemonMessage?: string): string {
  const plain = STRERROR.get(-num)?.[1];
  if (daemonMessage !== undefined && daemonMessage !== "" && daemonMessage !== plain) {
    return daemonMessage; // a specific message (a limit named, "crosses a mount point")
  }
  return SYSTEM.get(num)?.[1] ?? plain?.toLowerCase() ?? code;
}

function decorate(e: SystemError, syscall: string, path?: PathArg, dest?: PathArg): void {
  e.syscall = syscall;
  if (path !== undefined) e.path = path;
  if (dest !== undefined) e.dest = dest;
}

function suffix(syscall: string, path?: PathArg, dest?: PathArg): string {
  let s = `, ${syscall}`;
  if (path !== undefined) s += ` '${show(path)}'`;
  if (dest !== undefined) s += ` -> '${show(dest)}'`;
  return s;
}

/** A system error for `code` as Node would raise it from `syscall` on the caller's paths. */
export function systemError(code: string, syscall: string, path?: PathArg, dest?: PathArg,
                            daemonMessage?: string, errnoHint?: number): SystemError {
  const num = BY_CODE.get(code) ?? (errnoHint !== undefined && errnoHint > 0 ? -errnoHint : -5);
  const e = new Error(`${code}: ${describe(num, code, daemonMessage)}${suffix(syscall, path, dest)}`) as SystemError;
  e.errno = num;
  e.code = code;
  decorate(e, syscall, path, dest);
  Error.captureStackTrace(e, systemError);
  return e;
}

/** A path (or a link in it) leads out of the root: refused, nothing done. `code` is
 * `"EXDEV"` (what the kernel's `RESOLVE_BENEATH` gives), `errno` -18. */
export class EscapeError extends Error implements SystemError {
  code = "EXDEV";
  errno = -18;
  syscall = "";
  path?: PathArg;
  dest?: PathArg;

  constructor(syscall: string, path?: PathArg, dest?: PathArg, message = "path escapes the root") {
    super(`EXDEV: ${message}${suffix(syscall, path, dest)}`);
    this.name = "EscapeError";
    decorate(this, syscall, path, dest);
  }
}

/** The connection to the daemon broke (it went away, or it closed us for a protocol
 * error): every call in flight fails with this; the client must be connected anew. */
export class ConnectionLost extends Error implements SystemError {
  code = "ECONNRESET";
  errno = -104;
  syscall = "recvmsg";

  constructor(readonly socketPath: string, why: string) {
    super(`ECONNRESET: the connection to the beneathd daemon at ${socketPath} was lost (${why})`);
    this.name = "ConnectionLost";
  }
}

/** Node's AbortError (what `fs.promises` rejects with when its `signal` aborts). */
export function abortError(signal: AbortSignal): Error {
  const e = new Error("The operation was aborted", { cause: signal.reason }) as Error & { code: string };
  e.name = "AbortError";
  e.code = "ABORT_ERR";
  return e;
}

/** Node's argument errors: `TypeError` with `code` `ERR_INVALID_ARG_TYPE`, or `ERR_INVALID_ARG_VALUE`. */
export function invalidArg(name: string, expected: string, actual: unknown, value = false): TypeError {
  const got = actual === null ? "null" : Buffer.isBuffer(actual) ? "an instance of Buffer"
    : typeof actual === "object" ? `an instance of ${(actual as object).constructor?.name ?? "Object"}`
    : typeof actual === "string" && actual.length > 40 ? `type string ('${actual.slice(0, 25)}...')`
    : `type ${typeof actual} (${String(actual)})`;
  const e = value
    ? new TypeError(`The argument '${name}' ${expected}. Received ${got}`)
    : new TypeError(`The "${name}" argument must be ${expected}. Received ${got}`);
  (e as TypeError & { code: string }).code = value ? "ERR_INVALID_ARG_VALUE" : "ERR_INVALID_ARG_TYPE";
  return e;
}

/** The error for a wire error map (PROTOCOL.md "Error map"), named by the caller's paths. */
export function fromWire(err: unknown, syscall: string, paths: readonly (PathArg | undefined)[]): Error {
  if (err === null || typeof err !== "object" || err instanceof Uint8Array) {
    return systemError("EPROTO", syscall, undefined, undefined, `malformed error reply from the daemon`);
  }
  const m = err as Record<string, unknown>;
  const idx = Array.isArray(m.paths) ? (m.paths as unknown[]).filter((i): i is number => typeof i === "number") : [];
  const path = idx.length > 0 ? paths[idx[0]!] : undefined;
  const dest = idx.length > 1 ? paths[idx[1]!] : undefined;
  const message = typeof m.message === "string" ? m.message : undefined;
  if (m.code === "EESCAPE") return new EscapeError(syscall, path, dest, message ?? "path escapes the root");
  if (m.exception === "TypeError" || m.exception === "ValueError") {
    const e = systemError("EINVAL", syscall, path, dest, message);
    return e;
  }
  const code = typeof m.code === "string" ? m.code : "EIO";
  return systemError(code, syscall, path, dest, message, typeof m.errno === "number" ? m.errno : undefined);
}
