/**
 * The I/O shell around a `ClientConnection`: one `SOCK_SEQPACKET` socket driven by
 * libuv's poll through the native addon (`native/seqpacket.c`; Node's core cannot speak
 * `SOCK_SEQPACKET` or receive fds). Sends never block: a datagram that would block waits
 * in a queue for the socket to be writable. Every readable datagram is handed to the
 * connection at once, and its event to the client.
 */
import { createRequire } from "node:module";

import { ClientConnection, FRAME_MAX, type Event } from "./connection.js";

export interface Addon {
  connect(path: string | Buffer): number;
  send(fd: number, data: Uint8Array, fds?: number[]): number;
  recv(fd: number, size: number): null | { data: Buffer; fds: number[]; flags: number };
  close(fd: number): void;
  socketpair(): [number, number];
  MSG_TRUNC: number;
  MSG_CTRUNC: number;
  Poller: new (fd: number, cb: (err: Error | null, readable: boolean, writable: boolean) => void) => Poller;
}

export interface Poller {
  start(readable: boolean, writable: boolean): void;
  ref(): void;
  unref(): void;
  close(): void;
}

const require = createRequire(import.meta.url);
export const addon: Addon = require("../build/Release/seqpacket.node") as Addon;

/** Close fds nobody will use (a reply that came for a call already given up). */
export function closeFds(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      addon.close(fd);
    } catch {
      // already gone: nothing to free
    }
  }
}

export class Transport {
  readonly conn = new ClientConnection();
  private readonly fd: number;
  private readonly poller: Poller;
  private queue: Buffer[] = [];
  private closed = false;
  private referenced = false;

  constructor(readonly socketPath: string, private readonly onEvent: (ev: Event) => void,
              private readonly onLost: (why: string) => void) {
    this.fd = addon.connect(socketPath);
    this.poller = new addon.Poller(this.fd, (err, readable, writable) => this.ready(err, readable, writable));
    this.poller.start(true, false);
    this.poller.unref();
  }

  /** Keep the process alive while calls are in flight, not when the client is idle. */
  hold(busy: boolean): void {
    if (this.closed || busy === this.referenced) return;
    this.referenced = busy;
    if (busy) this.poller.ref();
    else this.poller.unref();
  }

  /** Queue datagrams (in order, never interleaved with another message's). */
  send(datagrams: readonly Buffer[]): void {
    if (this.closed) return;
    if (this.queue.length > 0) {
      this.queue.push(...datagrams);
      return;
    }
    for (let i = 0; i < datagrams.length; i++) {
      let n: number;
      try {
        n = addon.send(this.fd, datagrams[i]!);
      } catch (e) {
        this.lose(`sendmsg: ${(e as Error).message}`);
        return;
      }
      if (n < 0) { // EAGAIN: the rest waits for writable
        this.queue.push(...datagrams.slice(i));
        this.poller.start(true, true);
        return;
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    closeFds(this.conn.takeFds()); // those of a message cut short
    this.poller.close();
    try {
      addon.close(this.fd);
    } catch {
      // nothing to do: the fd is ours and closed once
    }
  }

  private ready(err: Error | null, readable: boolean, writable: boolean): void {
    if (this.closed) return;
    if (err !== null) { // the socket's own error (SO_ERROR): what the daemon sent before it is still read
      this.drain();
      this.lose(err.message);
      return;
    }
    if (writable) this.flush();
    if (readable) this.drain();
  }

  private flush(): void {
    while (this.queue.length > 0 && !this.closed) {
      let n: number;
      try {
        n = addon.send(this.fd, this.queue[0]!);
      } catch (e) {
        this.lose(`sendmsg: ${(e as Error).message}`);
        return;
      }
      if (n < 0) return;
      this.queue.shift();
    }
    if (!this.closed) this.poller.start(true, false);
  }

  private drain(): void {
    for (;;) {
      if (this.closed) return;
      let got: ReturnType<Addon["recv"]>;
      try {
        got = addon.recv(this.fd, FRAME_MAX + 64);
      } catch (e) {
        this.lose(`recvmsg: ${(e as Error).message}`);
        return;
      }
      if (got === null) return;
      if (got.data.length === 0 && got.fds.length === 0) {
        this.lose("the daemon closed the connection");
        return;
      }
      if (got.flags & (addon.MSG_TRUNC | addon.MSG_CTRUNC)) {
        closeFds(got.fds);
        this.lose("a datagram or its fds were truncated");
        return;
      }
      let ev: Event | null;
      try {
        ev = this.conn.receive(got.data, got.fds);
      } catch (e) {
        closeFds(this.conn.takeFds());
        this.lose((e as Error).message);
        return;
      }
      if (ev !== null) this.onEvent(ev);
    }
  }

  private lose(why: string): void {
    if (this.closed) return;
    this.close();
    this.onLost(why);
  }
}
