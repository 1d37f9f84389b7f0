/**
 * The client end of one connection, without I/O (the design of the Python
 * `protocol/connection.py`, after h11): it turns calls into datagrams and datagrams into
 * events, and keeps what the protocol needs between them (msgids, a message being
 * reassembled from its frames). The transport (`transport.ts`) moves the datagrams.
 *
 * Wire facts (PROTOCOL.md): a datagram is one frame, a header byte (0x00 FINAL, 0x01
 * MORE) then payload; a message is the payloads up to a FINAL frame, msgpack; fds arrive on
 * the first frame of a reply.
 */
import { Decoder, Encoder } from "@msgpack/msgpack";

export const FRAME_MAX = 204800;
export const FINAL = 0x00;
export const MORE = 0x01;
/** The daemon's message limit (64 MiB): bigger writes go through an atomic writer's fd. */
export const MESSAGE_MAX = 64 << 20;

export interface Reply {
  readonly type: "reply";
  readonly msgid: number;
  readonly error: unknown;
  readonly result: unknown;
  readonly fds: number[];
}

export interface Partial {
  readonly type: "partial";
  readonly msgid: number;
  readonly kind: string;
  readonly data: unknown;
  readonly fds: number[];
}

/** The daemon refused the connection or closed it for a protocol error (msgid nil). */
export interface Refusal {
  readonly type: "refusal";
  readonly error: unknown;
  readonly fds: number[];
}

export type Event = Reply | Partial | Refusal;

export class ProtocolError extends Error {
  constructor(message: string) {
    super(`beneathd protocol error: ${message}`);
    this.name = "ProtocolError";
  }
}

const encoder = new Encoder({ ignoreUndefined: false, useBigInt64: true }); // ns times are bigints
// int64 values (nanosecond times, big inode numbers) come as bigint, the rest as number
const decoder = new Decoder({ useBigInt64: true });

function frames(payload: Uint8Array): Buffer[] {
  const room = FRAME_MAX - 1;
  if (payload.length <= room) {
    const f = Buffer.allocUnsafe(payload.length + 1);
    f[0] = FINAL;
    f.set(payload, 1);
    return [f];
  }
  const out: Buffer[] = [];
  for (let at = 0; at < payload.length; at += room) {
    const part = payload.subarray(at, Math.min(at + room, payload.length));
    const f = Buffer.allocUnsafe(part.length + 1);
    f[0] = at + room >= payload.length ? FINAL : MORE;
    f.set(part, 1);
    out.push(f);
  }
  return out;
}

export class ClientConnection {
  private nextId = 1;
  private parts: Uint8Array[] = [];
  private partsLength = 0;
  private partFds: number[] = [];

  /** A fresh msgid, unique among the calls in flight (wraps below 2^32). */
  msgid(inFlight: (id: number) => boolean): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
      if (!inFlight(id)) return id;
    }
  }

  /** The datagrams of a request (call options only when there are any). */
  request(msgid: number, method: string, params: unknown[], options?: Record<string, unknown>): Buffer[] {
    const msg: unknown[] = [0, msgid, method, params];
    if (options !== undefined && Object.keys(options).length > 0) msg.push(options);
    const payload = encoder.encode(msg);
    if (payload.length > MESSAGE_MAX) {
      throw new RangeError(`a request of ${payload.length} bytes is over the daemon's message limit (${MESSAGE_MAX})`);
    }
    return frames(payload);
  }

  cancel(msgid: number): Buffer[] {
    return frames(encoder.encode([2, "cancel", [msgid]]));
  }

  more(msgid: number): Buffer[] {
    return frames(encoder.encode([2, "more", [msgid]]));
  }

  /**
   * One datagram in: the event it completes, or null (a frame of a longer message).
   * Throws ProtocolError for what no daemon sends (the caller drops the connection); the
   * fds of the bad message are then the caller's to close (`takeFds`).
   */
  receive(datagram: Buffer, fds: number[]): Event | null {
    if (fds.length > 0) this.partFds.push(...fds); // first: on any throw they are in takeFds()
    if (datagram.length === 0) throw new ProtocolError("an empty datagram");
    const header = datagram[0];
    if (header !== FINAL && header !== MORE) throw new ProtocolError(`frame header ${header}`);
    this.parts.push(datagram.subarray(1));
    this.partsLength += datagram.length - 1;
    if (this.partsLength > MESSAGE_MAX) throw new ProtocolError("a message over 64 MiB");
    if (header === MORE) return null;
    const payload = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partsLength);
    const got = this.partFds;
    this.parts = [];
    this.partsLength = 0;
    this.partFds = [];
    let msg: unknown;
    try {
      msg = decoder.decode(payload);
    } catch (e) {
      this.partFds = got; // the caller closes them
      throw new ProtocolError(`undecodable message: ${(e as Error).message}`);
    }
    if (!Array.isArray(msg) || msg.length !== 4) {
      this.partFds = got;
      throw new ProtocolError("a message that is not a 4-element array");
    }
    const [type, msgid, a, b] = msg as [unknown, unknown, unknown, unknown];
    if (type === 1 && msgid === null) return { type: "refusal", error: a, fds: got };
    const id = typeof msgid === "bigint" ? Number(msgid) : msgid;
    if (typeof id !== "number") {
      this.partFds = got;
      throw new ProtocolError("a message without a msgid");
    }
    if (type === 1) return { type: "reply", msgid: id, error: a, result: b, fds: got };
    if (type === 3 && typeof a === "string") return { type: "partial", msgid: id, kind: a, data: b, fds: got };
    this.partFds = got;
    throw new ProtocolError(`a message of type ${String(type)}`);
  }

  /** fds of a message that failed to parse (the caller closes them). */
  takeFds(): number[] {
    const f = this.partFds;
    this.partFds = [];
    return f;
  }
}
