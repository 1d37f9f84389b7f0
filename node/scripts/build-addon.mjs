#!/usr/bin/env node
// Builds build/Release/seqpacket.node with node-gyp; run by npm install/ci.
//
// node-gyp must never download headers (the machines that build this often
// have no network beyond the npm registry, and downloaded headers could differ
// from the node that will load the addon), so it always gets --nodedir: the
// prefix of the running node, whose include/node holds node_api.h and uv.h.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const pkgDir = path.resolve(here, "..");

function fail(msg) {
  console.error(`build-addon: ${msg}`);
  process.exit(1);
}

// /usr/bin/node -> /usr; BENEATHD_NODEDIR overrides for a node elsewhere.
const nodedir = path.resolve(process.env.BENEATHD_NODEDIR || path.resolve(process.execPath, "..", ".."));
const header = path.join(nodedir, "include", "node", "node_api.h");
if (!existsSync(header)) {
  fail(
    `Node.js headers not found: ${header} is missing.\n` +
      `  On Debian/Ubuntu install them with the node you run: "apt install libnode-dev" for\n` +
      `  Debian's nodejs, or the nodesource "nodejs" package, which ships include/node itself.\n` +
      `  Or set BENEATHD_NODEDIR to a prefix whose include/node has node_api.h.`,
  );
}

// npm exports npm_config_node_gyp to scripts; otherwise use the node-gyp
// bundled with npm, next to npm-cli.js or under this node's prefix.
const candidates = [process.env.npm_config_node_gyp];
if (process.env.npm_execpath) {
  candidates.push(path.resolve(path.dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
}
const prefix = path.resolve(process.execPath, "..", "..");
candidates.push(path.join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"));
const gyp = candidates.find((p) => p && existsSync(p));
if (!gyp) {
  fail(
    `node-gyp not found (looked at: ${candidates.filter(Boolean).join(", ")}).\n` +
      `  Run through npm (it sets npm_config_node_gyp), or install npm, which bundles node-gyp.`,
  );
}

const args = [gyp, "rebuild", `--nodedir=${nodedir}`];
console.error(`build-addon: ${process.execPath} ${args.join(" ")}`);
const r = spawnSync(process.execPath, args, { cwd: pkgDir, stdio: "inherit" });
if (r.error) fail(`could not run node-gyp: ${r.error.message}`);
if (r.signal) fail(`node-gyp killed by ${r.signal}`);
process.exit(r.status ?? 1);
