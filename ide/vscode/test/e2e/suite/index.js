// The in-editor suite (extensionTestsPath): runs inside code-server's
// extension host with the installed Tether extension, the test `java`
// debugger (extensionDevelopmentPath) and a workspace served by
// `tether-agent sandbox`. Results go to <workspace>/.tether-e2e/results.json;
// run() rejects when a test failed, which becomes codeAutomationExit(1).
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const vscode = require('vscode');

const ws = () => vscode.workspace.workspaceFolders[0].uri.fsPath;
const e2eDir = () => path.join(ws(), '.tether-e2e');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, cond, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** Records the DAP traffic of every session of a debug type. */
function trace(type) {
  const sessions = new Map(); // session id -> {session, sent: [], received: [], exited}
  const get = (s) => {
    if (!sessions.has(s.id)) sessions.set(s.id, { session: s, toAdapter: [], fromAdapter: [], ended: false });
    return sessions.get(s.id);
  };
  const disposables = [
    vscode.debug.registerDebugAdapterTrackerFactory(type, {
      createDebugAdapterTracker: (s) => ({
        onWillReceiveMessage: (m) => get(s).toAdapter.push(m),
        onDidSendMessage: (m) => get(s).fromAdapter.push(m),
        onExit: () => (get(s).ended = true),
      }),
    }),
    vscode.debug.onDidTerminateDebugSession((s) => sessions.has(s.id) && (get(s).ended = true)),
  ];
  return { sessions, dispose: () => disposables.forEach((d) => d.dispose()) };
}

const outputOf = (rec) =>
  rec.fromAdapter
    .filter((m) => m.type === 'event' && m.event === 'output')
    .map((m) => m.body.output)
    .join('');

async function runJavaSession(api, name, vmArgs) {
  const classes = path.join(ws(), '.tether-sandbox', 'classes');
  const tr = trace('java');
  try {
    const before = api.java.releases;
    const ok = await vscode.debug.startDebugging(vscode.workspace.workspaceFolders[0], {
      type: 'java',
      request: 'launch',
      name,
      mainClass: 'Sample',
      classPaths: [classes],
      vmArgs,
      env: { SAMPLE_FROM_LAUNCH_JSON: '1' },
    });
    assert.ok(ok, 'startDebugging');
    const rec = await waitFor('the java session to end', () => [...tr.sessions.values()].find((r) => r.session.name === name && r.ended), 120000);
    const out = outputOf(rec);
    const exited = rec.fromAdapter.find((m) => m.type === 'event' && m.event === 'exited');
    assert.ok(exited, `an exited event; output:\n${out}`);
    assert.equal(exited.body.exitCode, 0, `the JVM's exit code; output:\n${out}`);
    assert.match(out, /GET http:\/\/orders\.sandbox\.internal\/ -> /, out);
    assert.match(out, /OK: the private network is reachable/, out);
    // What the provider gave the java debugger: Tether's vmArgs and env.
    const launch = rec.toAdapter.find((m) => m.command === 'launch').arguments;
    const args = Array.isArray(launch.vmArgs) ? launch.vmArgs.join(' ') : launch.vmArgs;
    assert.match(args, /-javaagent:\S+\.jar/, `vmArgs ${args}`);
    assert.match(args, /-Dsample\.marker=1/, `the user's vmArgs stay: ${args}`);
    assert.equal(typeof launch.vmArgs, typeof vmArgs, 'vmArgs keep their form (string or array)');
    assert.ok(launch.env.TETHER_AGENT_CONTROL && launch.env.TETHER_AGENT_TOKEN, `env ${Object.keys(launch.env)}`);
    assert.equal(launch.env.SAMPLE_FROM_LAUNCH_JSON, '1');
    assert.match(launch.tetherSessionId, /^s-/);
    await waitFor('launch/release of the prepared session', () => api.java.releases > before, 30000);
    await waitFor('the connection log entry', () =>
      api.backend.lines.some((l) => l.includes(`connection ${launch.tetherSessionId} orders.sandbox.internal:80 via tunnel`)),
    );
    return launch;
  } finally {
    tr.dispose();
  }
}

const tests = [];
const test = (name, fn) => tests.push({ name, fn });
let api;

test('the extension activates and lists the run configurations', async () => {
  const ext = vscode.extensions.getExtension('tether-dev.tether');
  assert.ok(ext, 'tether-dev.tether is installed');
  api = await ext.activate();
  await vscode.commands.executeCommand('workbench.view.extension.tether');
  await waitFor('run configuration "sample"', () => api.tree.configs.some((c) => c.name === 'sample'));
  const nodes = api.tree.getChildren();
  const sample = nodes.find((n) => n.kind === 'config' && n.config.name === 'sample');
  const item = api.tree.getTreeItem(sample);
  assert.equal(item.checkboxState, vscode.TreeItemCheckboxState.Checked);
  assert.match(item.description, /java · interconnect on · sandbox/);
  assert.ok(api.backend.lines.some((l) => /connected to tether/.test(l)), api.backend.lines.join('\n'));
});

test('the interconnect toggle changes tether.yaml', async () => {
  const yaml = path.join(ws(), 'tether.yaml');
  const before = fs.readFileSync(yaml, 'utf8');
  await vscode.commands.executeCommand('tether.toggleInterconnect', 'sample');
  const off = fs.readFileSync(yaml, 'utf8');
  assert.notEqual(off, before);
  assert.match(off, /enabled: false/);
  const item = api.tree.getTreeItem(api.tree.getChildren().find((n) => n.kind === 'config' && n.config.name === 'sample'));
  assert.equal(item.checkboxState, vscode.TreeItemCheckboxState.Unchecked);
  await vscode.commands.executeCommand('tether.toggleInterconnect', 'sample');
  assert.match(fs.readFileSync(yaml, 'utf8'), /enabled: true/);
  // The proxy picker, with the choice given (no quick pick in a test).
  await vscode.commands.executeCommand('tether.pickProxy', 'sample', 'sandbox');
  assert.equal(api.tree.configs.find((c) => c.name === 'sample').interconnect.proxy, 'sandbox');
});

test('a java debug session (vmArgs as a string) reaches the private network', async () => {
  await runJavaSession(api, 'Sample (vmArgs string)', '-Dsample.marker=1 -Xmx128m');
  assert.ok(api.backend.statusHistory.some((t) => /connected to sandbox/.test(t)), api.backend.statusHistory.join(' | '));
  await waitFor('the status bar back to idle', () => api.backend.status.text === '$(plug) Tether', 20000);
});

test('a java debug session (vmArgs as an array) reaches the private network', async () => {
  await runJavaSession(api, 'Sample (vmArgs array)', ['-Dsample.marker=1', '-Xmx128m']);
});

test('Debug with Tether: debugReady, then "Attach debugger" reaches the JVM', async () => {
  const client = await api.backend.client();
  const rc = api.tree.configs.find((c) => c.name === 'sample');
  await client.request('runConfig/save', { config: { ...rc, name: 'sample-suspended', debug: { suspend: true } } });
  await waitFor('sample-suspended in the tree', () => api.tree.configs.some((c) => c.name === 'sample-suspended'), 20000);
  const tr = trace('java');
  try {
    const launchId = await vscode.commands.executeCommand('tether.launchDebug', 'sample-suspended');
    assert.match(launchId, /^l-/);
    const l = await waitFor('launch/state debugReady', () => {
      const x = api.tree.launches.get(launchId);
      return x && x.state === 'debugReady' && x;
    });
    assert.match(l.debugAddress, /^127\.0\.0\.1:\d+$/);
    assert.ok(await vscode.commands.executeCommand('tether.attachDebugger', launchId), 'attach session started');
    const rec = await waitFor('the attach session', () => [...tr.sessions.values()].find((r) => /JDWP handshake ok/.test(outputOf(r))), 30000);
    const attach = rec.toAdapter.find((m) => m.command === 'attach').arguments;
    assert.equal(`${attach.hostName}:${attach.port}`, l.debugAddress);
    await vscode.debug.stopDebugging(rec.session);
    // The debugger left: the JVM resumes, runs the sample through the tunnel and exits 0.
    const end = await waitFor('the launch to exit', () => {
      const x = api.tree.launches.get(launchId);
      return x && (x.state === 'exited' || x.state === 'failed') && x;
    });
    assert.equal(end.exitCode, 0, JSON.stringify(end));
  } finally {
    tr.dispose();
  }
});

test('the tether dap adapter answers through the DebugAdapterDescriptorFactory', async () => {
  const tr = trace('tether');
  try {
    // The attach fails; VS Code reports that by rejecting (its error dialog is off in tests).
    const started = vscode.debug.startDebugging(vscode.workspace.workspaceFolders[0], {
      type: 'tether',
      request: 'attach',
      name: 'tether dap',
      proxy: 'sandbox',
      // Not a DAP server: the adapter must say so (no hang).
      target: 'db.sandbox.internal:5432',
    }).then(() => '', (e) => String((e && e.message) || e));
    const rec = await waitFor('the tether session', () => [...tr.sessions.values()][0]);
    const init = await waitFor('the initialize response', () => rec.fromAdapter.find((m) => m.type === 'response' && m.command === 'initialize'), 30000);
    assert.equal(init.success, true, JSON.stringify(init));
    const attach = await waitFor('the attach response', () => rec.fromAdapter.find((m) => m.type === 'response' && m.command === 'attach'), 60000);
    assert.equal(attach.success, false);
    assert.match(JSON.stringify(attach), /db\.sandbox\.internal:5432/);
    assert.match(await started, /db\.sandbox\.internal:5432 .*DAP/);
    assert.ok(api.backend.lines.some((l) => /dap --workspace/.test(l)));
  } finally {
    tr.dispose();
    await vscode.commands.executeCommand('workbench.action.closeMessages').then(undefined, () => {});
  }
});

test('screenshot of the workbench', async () => {
  await vscode.commands.executeCommand('notifications.clearAll').then(undefined, () => {});
  await vscode.commands.executeCommand('workbench.action.closeAuxiliaryBar').then(undefined, () => {});
  await vscode.commands.executeCommand('workbench.view.extension.tether');
  api.backend.output.show(true);
  await sleep(1000);
  fs.writeFileSync(path.join(e2eDir(), 'screenshot.request'), '');
  await waitFor('the runner to take the screenshot', () => fs.existsSync(path.join(e2eDir(), 'screenshot.done')), 120000);
  const verdict = fs.readFileSync(path.join(e2eDir(), 'screenshot.done'), 'utf8');
  assert.equal(verdict.trim(), 'ok', verdict);
});

exports.run = async function run() {
  fs.mkdirSync(e2eDir(), { recursive: true });
  const results = [];
  for (const t of tests) {
    const start = Date.now();
    try {
      await t.fn();
      results.push({ name: t.name, ok: true, ms: Date.now() - start });
    } catch (e) {
      results.push({ name: t.name, ok: false, ms: Date.now() - start, error: (e && e.stack) || String(e) });
    }
    fs.writeFileSync(path.join(e2eDir(), 'results.json'), JSON.stringify(results, null, 2));
  }
  if (api) {
    fs.writeFileSync(path.join(e2eDir(), 'tether-output.log'), api.backend.lines.join('\n') + '\n');
  }
  const failed = results.filter((r) => !r.ok).length;
  if (failed) {
    throw new Error(`${failed} test(s) failed`);
  }
};
