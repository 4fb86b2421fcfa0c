// Test helpers shared by the node --test layer and the code-server layer:
// the repository's binaries, and `tether-agent sandbox` (an SSH proxy
// machine on loopback with a private network inside) in a fresh workspace.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const extDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repoDir = path.resolve(extDir, '../..');
export const tetherBin = process.env.TETHER_BIN || path.join(repoDir, 'bin/tether');
export const agentBin = process.env.TETHER_AGENT_BIN || path.join(repoDir, 'bin/tether-agent');

/** Polls cond (which may be async) until it returns a truthy value, or throws after timeoutMs. */
export async function waitFor(what, cond, timeoutMs = 60000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) {
      return v;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Starts `tether-agent sandbox` in a new workspace under parent (default: a
 * temporary directory) and compiles the sample app into its classpath.
 * Returns {ws, classes, yaml, port, log, stop}.
 */
export async function startSandbox(parent) {
  for (const b of [tetherBin, agentBin]) {
    if (!fs.existsSync(b)) {
      throw new Error(`${b} is missing: run make build`);
    }
  }
  const ws = fs.mkdtempSync(path.join(parent ?? os.tmpdir(), 'tether-ws-'));
  const classes = path.join(ws, '.tether-sandbox', 'classes');
  fs.mkdirSync(classes, { recursive: true });
  execFileSync('javac', ['--release', '11', '-d', classes, path.join(repoDir, 'examples/sample-app/Sample.java')], { stdio: 'inherit' });
  const logFile = path.join(ws, '.tether-sandbox', 'agent.log');
  const out = fs.openSync(logFile, 'a');
  const proc = spawn(agentBin, ['sandbox', '--workspace', ws, '--listen', '127.0.0.1:0'], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  let exited = false;
  proc.on('exit', () => (exited = true));
  const log = () => fs.readFileSync(logFile, 'utf8');
  const m = await waitFor('the sandbox to listen', () => {
    if (exited) {
      throw new Error(`tether-agent sandbox exited:\n${log()}`);
    }
    return /listening on [^\s]+:(\d+)/.exec(log());
  });
  const stop = async () => {
    if (!exited) {
      proc.kill('SIGTERM');
      await waitFor('the sandbox to exit', () => exited, 10000).catch(() => proc.kill('SIGKILL'));
    }
  };
  return { ws, classes, yaml: path.join(ws, 'tether.yaml'), port: Number(m[1]), log, stop, pid: proc.pid };
}

/** Runs java with the given JVM args and env; resolves {code, stdout, stderr}. */
export function runJava(vmArgs, env, classes, mainClass = 'Sample') {
  return new Promise((resolve, reject) => {
    const p = spawn('java', [...vmArgs, '-cp', classes, mainClass], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
