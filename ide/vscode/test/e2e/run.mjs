// The code-server layer: the packaged extension installed into a real
// code-server, the workbench driven by Debian chromium (playwright-core),
// the in-editor suite (suite/index.js) started through the `payload` URL
// parameter and its exit code read through codeAutomationExit (the smoke
// test driver hook). Prints one line per test, then "N passed, N failed".
//
//   node test/e2e/run.mjs --code-server BIN --vsix FILE [--out DIR]
// PATH must start with Node 24 (code-server's runtime).

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { extDir, startSandbox, tetherBin, waitFor } from '../sandbox.mjs';

const { values: opt } = parseArgs({
  options: {
    'code-server': { type: 'string' },
    vsix: { type: 'string' },
    out: { type: 'string', default: path.join(extDir, 'test-output/e2e') },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
const out = path.resolve(opt.out);
fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(out, { recursive: true });

const results = []; // {name, ok, error}
const cleanups = [];
const log = (...a) => console.log(...a);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

async function main() {
  const sb = await startSandbox(out);
  cleanups.push(() => sb.stop());
  const userData = path.join(out, 'user-data');
  const extensions = path.join(out, 'extensions');
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify(
      {
        'tether.path': tetherBin,
        'workbench.startupEditor': 'none',
        'security.workspace.trust.enabled': false,
        'extensions.autoCheckUpdates': false,
        'extensions.autoUpdate': false,
        'extensions.ignoreRecommendations': true,
        'telemetry.telemetryLevel': 'off',
        'update.mode': 'none',
        'workbench.tips.enabled': false,
        'chat.disableAIFeatures': true,
        'window.zoomLevel': 0,
      },
      null,
      2,
    ),
  );
  const env = {
    ...process.env,
    // No marketplace here: any gallery request goes to a closed loopback port.
    EXTENSIONS_GALLERY: JSON.stringify({ serviceUrl: 'http://127.0.0.1:9/gallery', itemUrl: 'http://127.0.0.1:9/items' }),
  };
  const common = ['--config', path.join(out, 'config.yaml'), '--user-data-dir', userData, '--extensions-dir', extensions];
  fs.writeFileSync(path.join(out, 'config.yaml'), 'auth: none\ncert: false\n');

  // Install the packaged extension as a user would.
  const inst = execFileSync(opt['code-server'], [...common, '--install-extension', path.resolve(opt.vsix), '--force'], { env, encoding: 'utf8' });
  fs.writeFileSync(path.join(out, 'install.log'), inst);
  const installed = fs.readdirSync(extensions).find((d) => d.startsWith('tether-dev.tether-'));
  results.push({ name: 'code-server --install-extension installs the .vsix', ok: !!installed, error: installed ? '' : inst });
  if (!installed) {
    return;
  }

  const port = await freePort();
  const csLog = fs.openSync(path.join(out, 'code-server.log'), 'a');
  const cs = spawn(
    opt['code-server'],
    [...common, '--bind-addr', `127.0.0.1:${port}`, '--auth', 'none', '--disable-telemetry', '--disable-update-check',
      '--disable-workspace-trust', '--vscode-option', 'enable-smoke-test-driver'],
    { env, stdio: ['ignore', csLog, csLog], detached: true },
  );
  fs.closeSync(csLog);
  let csExited = false;
  cs.on('exit', () => (csExited = true));
  cleanups.push(async () => {
    if (!csExited) {
      process.kill(-cs.pid, 'SIGTERM'); // code-server and its extension host
      await waitFor('code-server to exit', () => csExited, 15000).catch(() => process.kill(-cs.pid, 'SIGKILL'));
    }
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor('code-server to answer', async () => {
    if (csExited) {
      throw new Error('code-server exited:\n' + fs.readFileSync(path.join(out, 'code-server.log'), 'utf8'));
    }
    return fetch(`${base}/healthz`).then((r) => r.ok, () => false);
  }, 120000, 250);

  const browser = await chromium.launch({
    executablePath: opt.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  cleanups.push(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
  page.setDefaultTimeout(120000);
  const consoleLog = fs.createWriteStream(path.join(out, 'browser-console.log'));
  page.on('console', (m) => consoleLog.write(`[${m.type()}] ${m.text()}\n`));
  page.on('pageerror', (e) => consoleLog.write(`[pageerror] ${e.message}\n`));
  let exitCode;
  await page.exposeFunction('codeAutomationExit', (code) => {
    exitCode = code;
  });

  const remote = (p) => `vscode-remote://127.0.0.1:${port}${p}`;
  const payload = [
    ['extensionDevelopmentPath', remote(path.join(extDir, 'test/e2e/java-debugger'))],
    ['extensionTestsPath', remote(path.join(extDir, 'test/e2e/suite/index.js'))],
  ];
  const url = `${base}/?folder=${encodeURIComponent(sb.ws)}&payload=${encodeURIComponent(JSON.stringify(payload))}`;
  fs.writeFileSync(path.join(out, 'url.txt'), url + '\n');
  // A loaded machine takes long to load the workbench: wait for the suite, not for 'load'.
  await page.goto(url, { waitUntil: 'commit', timeout: 180000 });

  // The suite asks for the screenshot while the workbench shows Tether.
  const e2e = path.join(sb.ws, '.tether-e2e');
  const shot = path.join(out, 'workbench.png');
  const screenshot = (async () => {
    await waitFor('the suite to ask for a screenshot', () => fs.existsSync(path.join(e2e, 'screenshot.request')) || exitCode !== undefined, 600000, 250);
    if (exitCode !== undefined) {
      return;
    }
    let verdict = 'ok';
    try {
      await page.screenshot({ path: shot });
      // What the user sees: the Tether view lists the configuration, the status bar item.
      await page.getByRole('treeitem', { name: /sample/ }).first().waitFor({ timeout: 20000 });
      const status = await page.locator('#tether-dev\\.tether\\.tether\\.status, .statusbar-item:has-text("Tether")').first().innerText({ timeout: 20000 });
      if (!/Tether/.test(status)) {
        verdict = `status bar item: ${status}`;
      }
    } catch (e) {
      verdict = String(e);
    }
    fs.writeFileSync(path.join(e2e, 'screenshot.done'), verdict);
    results.push({ name: 'the workbench shows the Tether view and status bar (screenshot)', ok: verdict === 'ok', error: verdict });
  })();

  await waitFor('the suite to finish (codeAutomationExit)', () => exitCode !== undefined || csExited, 900000, 250);
  await screenshot;
  if (!fs.existsSync(shot)) {
    await page.screenshot({ path: shot }).catch(() => {});
  }
  const resFile = path.join(e2e, 'results.json');
  const suite = fs.existsSync(resFile) ? JSON.parse(fs.readFileSync(resFile, 'utf8')) : [];
  for (const r of suite) {
    results.push(r);
  }
  for (const f of ['results.json', 'tether-output.log']) {
    if (fs.existsSync(path.join(e2e, f))) {
      fs.copyFileSync(path.join(e2e, f), path.join(out, f));
    }
  }
  const suiteOk = suite.length > 0 && suite.every((r) => r.ok);
  results.push({
    name: 'codeAutomationExit reports the suite result',
    ok: exitCode === (suiteOk ? 0 : 1) && suite.length > 0,
    error: `exit code ${exitCode}, ${suite.length} suite results`,
  });
}

let crashed;
try {
  await main();
} catch (e) {
  crashed = e;
  results.push({ name: 'code-server run', ok: false, error: e.stack || String(e) });
} finally {
  for (const c of cleanups.reverse()) {
    await Promise.resolve()
      .then(c)
      .catch((e) => console.error('cleanup:', e.message));
  }
}
for (const r of results) {
  log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name}${r.ms ? ` (${r.ms} ms)` : ''}`);
  if (!r.ok && r.error) {
    log('     ' + String(r.error).split('\n').join('\n     '));
  }
}
log(`artifacts: ${out} (workbench.png, code-server.log, browser-console.log, tether-output.log)`);
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
log(`${passed} passed, ${failed} failed`);
process.exit(failed || crashed ? 1 : 0);
