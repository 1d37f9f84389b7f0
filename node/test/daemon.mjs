// A real beneathd daemon for the Node tests: `python -m beneathd.daemon` on a fresh root
// in a private temporary directory (as `nobody` when the tests run as root, as the daemon
// must not run as root), and a plain directory beside it for comparing with node:fs.
import { spawn, execFileSync } from "node:child_process";
import { after, before } from "node:test";
import { existsSync, mkdtempSync, mkdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const TOP = resolve(HERE, "..", "..");
export const PYTHON = process.env.BENEATHD_PYTHON ?? join(TOP, ".venv", "bin", "python");
const ROOT_USER = process.getuid?.() === 0;

function nobody() {
  const out = execFileSync("id", ["-u", "nobody"]).toString().trim();
  const gid = execFileSync("id", ["-g", "nobody"]).toString().trim();
  return [Number(out), Number(gid)];
}

/** Give the daemon's user the tree (when the tests run as root). */
export function chownTree(path) {
  if (!ROOT_USER) return;
  const [u, g] = nobody();
  execFileSync("chown", ["-R", `${u}:${g}`, path]);
}

/** `startDaemon("--flag", ...)`, or `startDaemon({ socket, root }, ...)` to serve an
 * existing root on a given socket path (a daemon started again in another's place). */
export async function startDaemon(...extra) {
  const where = typeof extra[0] === "object" ? extra.shift() : {};
  const base = mkdtempSync(join(process.env.BENEATHD_TMP ?? tmpdir(), "beneathd-node-"));
  const root = where.root ?? join(base, "root");
  const plain = join(base, "plain");
  const outside = join(base, "outside");
  for (const d of [root, plain, outside]) if (!existsSync(d)) mkdirSync(d);
  chownTree(root);
  const socket = where.socket ?? join(base, "sock");
  const staleIno = existsSync(socket) ? statSync(socket).ino : -1;
  const args = ["-m", "beneathd.daemon", "--root", root, "--socket", socket, "--no-journal", ...extra];
  if (ROOT_USER) args.push("--user", "nobody", "--allow-uid", "0");
  const proc = spawn(PYTHON, args, { stdio: ["ignore", "ignore", "pipe"], cwd: TOP });
  // a test process that ends without its after() (a failure, a timeout) takes its daemon along
  const reap = () => { if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL"); };
  process.once("exit", reap);
  let stderr = "";
  proc.stderr.on("data", (b) => { stderr += b; });
  const deadline = Date.now() + 30_000;
  // ready when a socket file is there that this daemon bound (not one a dead daemon left)
  const bound = () => existsSync(socket) && statSync(socket).ino !== staleIno;
  while (!bound()) {
    if (proc.exitCode !== null) throw new Error(`the daemon exited (${proc.exitCode}): ${stderr}`);
    if (Date.now() > deadline) throw new Error(`the daemon did not bind ${socket}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    base, root, plain, outside, socket, proc,
    get stderr() { return stderr; },
    async stop() {
      process.removeListener("exit", reap);
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        await new Promise((r) => proc.once("exit", r));
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}

/** A daemon and a connected client for a test file, made in before() and handed to
 * `set(daemon, client)`, closed and stopped in after(). */
export function useDaemon(connect, set, ...extra) {
  let d;
  let c;
  before(async () => {
    d = await startDaemon(...extra);
    c = await connect(d.socket);
    set(d, c);
  });
  after(async () => {
    await c?.close();
    await d?.stop();
  });
}
