// The fast layer: the extension's client core (out/client.js, vscode-jsonrpc)
// against the real `tether serve`, with `tether-agent sandbox` as the proxy
// machine and the sample Java app as the process the IDE starts.
//   npm run compile && node --test test/fast/*.test.mjs

import assert from 'node:assert/strict';
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runJava, startSandbox, tetherBin, waitFor } from '../sandbox.mjs';

const require = createRequire(import.meta.url);
const { TetherClient, isResponseError } = require('../../out/client.js');
const { applyPrepared, matchRunConfig } = require('../../out/javaconfig.js');

// out/debug.js imports vscode for the settings only (java.applyToDebugSessions):
// a stand-in with the defaults lets the provider run here.
const fakeVscode = { workspace: { getConfiguration: () => ({ get: (_key, def) => def }) } };
const loadModule = Module._load;
Module._load = function (request, ...rest) {
  return request === 'vscode' ? fakeVscode : loadModule.call(this, request, ...rest);
};
const { JavaInterconnectProvider } = require('../../out/debug.js');
Module._load = loadModule;

describe('tether serve through the extension client', () => {
  let sb;
  let client;
  const logs = [];
  const tunnels = []; // interconnect/status notifications: only on reconnects
  const conns = [];
  const asked = [];

  before(async () => {
    sb = await startSandbox();
    client = await TetherClient.start({
      tetherPath: tetherBin,
      workspace: sb.ws,
      clientName: 'node-test',
      hooks: {
        log: (type, m) => logs.push(`${type} ${m}`),
        tunnelStatus: (s) => tunnels.push(s),
        connection: (r) => conns.push(r),
        showMessageRequest: async (p) => {
          asked.push(p);
          return { title: 'Trust and connect' };
        },
      },
    });
  });

  after(async () => {
    if (client) {
      assert.equal(await client.dispose(), 0, 'tether serve exits 0 after shutdown/exit');
    }
    await sb?.stop();
    if (sb && process.env.TETHER_KEEP_WS !== '1') {
      fs.rmSync(sb.ws, { recursive: true, force: true });
    }
  });

  test('initialize', () => {
    const r = client.initializeResult;
    assert.equal(r.serverInfo.name, 'tether');
    assert.match(r.protocolVersion, /^1\./);
    assert.equal(r.capabilities.workspace, sb.ws);
    for (const m of ['runConfig/list', 'interconnect/set', 'launch/prepare', 'launch/release']) {
      assert.ok(r.capabilities.methods.includes(m), `capabilities.methods has ${m}`);
    }
    assert.ok(r.capabilities.runConfigTypes.includes('java'));
  });

  test('runConfig/list gives the sandbox sample', async () => {
    const r = await client.listConfigs();
    const sample = r.configs.find((c) => c.name === 'sample');
    assert.ok(sample, `sample in ${JSON.stringify(r.configs)}`);
    assert.equal(sample.type, 'java');
    assert.deepEqual(sample.interconnect, { enabled: true, proxy: 'sandbox' });
    assert.match(r.revision, /\S/);
  });

  test('interconnect/set changes tether.yaml', async () => {
    const before = fs.readFileSync(sb.yaml, 'utf8');
    const { revision } = await client.listConfigs();
    const off = await client.setInterconnect('sample', false, undefined, revision);
    assert.notEqual(off.revision, revision);
    const offText = fs.readFileSync(sb.yaml, 'utf8');
    assert.notEqual(offText, before);
    assert.match(offText, /enabled: false/);
    assert.equal((await client.listConfigs()).configs.find((c) => c.name === 'sample').interconnect.enabled, false);
    // A stale revision is a conflict (1002), not an overwrite.
    await assert.rejects(client.setInterconnect('sample', true, undefined, revision), (e) => isResponseError(e) && e.code === 1002);
    await client.setInterconnect('sample', true, 'sandbox');
    assert.match(fs.readFileSync(sb.yaml, 'utf8'), /enabled: true/);
    await assert.rejects(client.setInterconnect('nope', true), (e) => isResponseError(e) && e.code === 1001 && /nope/.test(e.message));
  });

  test('launch/prepare returns the agent vmArgs and env; the JVM started with them reaches the private network; release closes the tunnel', async () => {
    const progress = [];
    const prep = await client.prepare('sample', false, (p) => progress.push(p));
    assert.match(prep.sessionId, /^s-/);
    assert.ok(prep.vmArgs.some((a) => a.startsWith('-javaagent:')), `vmArgs ${prep.vmArgs}`);
    assert.ok(prep.env.TETHER_AGENT_CONTROL && prep.env.TETHER_AGENT_TOKEN, `env has the agent's control address and token: ${Object.keys(prep.env ?? {})}`);
    assert.deepEqual([progress[0].kind, progress.at(-1).kind], ['begin', 'end']);
    assert.ok(progress.some((p) => p.kind === 'report' && /sandbox|Connect/.test(p.message)), JSON.stringify(progress));
    const st = await client.status();
    assert.ok(st.tunnels.some((t) => t.sessionId === prep.sessionId && t.state === 'connected'), JSON.stringify(st));

    // The launch configuration an IDE would run, as the extension builds it.
    const launch = applyPrepared({ type: 'java', request: 'launch', mainClass: 'Sample', vmArgs: ['-Xmx64m'], env: { KEEP: '1' } }, prep);
    assert.deepEqual(launch.vmArgs, [...prep.vmArgs, '-Xmx64m']);
    assert.equal(launch.env.KEEP, '1');
    const run = await runJava(launch.vmArgs, launch.env, sb.classes);
    assert.equal(run.code, 0, `Sample through the agent:\n${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /OK: the private network is reachable/);
    await waitFor('the connection log', () => conns.some((c) => c.sessionId === prep.sessionId && /orders\.sandbox\.internal:80/.test(c.target)), 20000);

    // Without the env the agent stays off: vmArgs alone are not enough.
    const noEnv = await runJava(prep.vmArgs, {}, sb.classes);
    assert.notEqual(noEnv.code, 0, `without env:\n${noEnv.stdout}`);

    assert.equal(await client.release(prep.sessionId), null);
    await waitFor('the tunnel to close', async () => !(await client.status()).tunnels.some((t) => t.sessionId === prep.sessionId), 20000);
    await assert.rejects(client.release('l-nope'), (e) => isResponseError(e) && e.code === 1001);
  });

  test('launch/prepare with debug adds a JDWP agent on loopback', async () => {
    const prep = await client.prepare('sample', true);
    try {
      assert.match(prep.debugAddress, /^127\.0\.0\.1:\d+$/);
      assert.ok(prep.vmArgs.some((a) => a.startsWith('-agentlib:jdwp=') && a.includes(prep.debugAddress)));
    } finally {
      await client.release(prep.sessionId);
    }
  });

  test('window/showMessageRequest is answered by the client (unknown host key)', async () => {
    const known = path.join(sb.ws, 'empty_known_hosts');
    fs.writeFileSync(known, '');
    const { proxies } = await client.listProxies();
    const px = proxies.find((p) => p.name === 'sandbox');
    await client.request('proxy/save', { proxy: { ...px, name: 'fresh', ssh: { ...px.ssh, knownHostsFile: known } } });
    const { configs } = await client.listConfigs();
    const rc = configs.find((c) => c.name === 'sample');
    await client.request('runConfig/save', { config: { ...rc, name: 'fresh-sample', interconnect: { enabled: true, proxy: 'fresh' } } });
    const prep = await client.prepare('fresh-sample', false);
    await client.release(prep.sessionId);
    assert.equal(asked.length, 1);
    assert.match(asked[0].message, /host key/);
    assert.deepEqual(asked[0].actions.map((a) => a.title), ['Trust and connect', 'Cancel']);
    assert.match(fs.readFileSync(known, 'utf8'), /ssh-ed25519/, 'the trusted key was added to known_hosts');
  });

  // JavaInterconnectProvider with a short claim timeout, on this client.
  const javaProvider = (claimTimeoutMs) => {
    const lines = [];
    const backend = {
      client: async () => client,
      running: async () => client,
      withProgress: (_title, run) => run(() => {}, undefined),
      refreshTunnels: async () => {},
      log: (l) => lines.push(l),
      showError: async (what, e) => lines.push(`error ${what}: ${e.message}`),
    };
    return { java: new JavaInterconnectProvider(backend, claimTimeoutMs), lines };
  };
  const javaLaunch = { type: 'java', request: 'launch', name: 'Sample', mainClass: 'Sample', tetherConfig: 'sample' };
  const tunnelOf = async (id) => (await client.status()).tunnels.some((t) => t.sessionId === id);

  test('java provider: a prepared session no debug session claims is released after the timeout', async () => {
    const { java, lines } = javaProvider(300);
    const launch = await java.resolveDebugConfigurationWithSubstitutedVariables(undefined, { ...javaLaunch });
    const id = launch.tetherSessionId;
    assert.match(id, /^s-/, JSON.stringify(lines));
    assert.ok(await tunnelOf(id), 'the tunnel is open after prepare');
    // The Java debugger never starts: no onDidStartDebugSession, no onDidTerminateDebugSession.
    await waitFor('the release of the unclaimed session', () => java.releases === 1, 10000);
    assert.ok(lines.some((l) => l.includes(`released session ${id} (no debug session started with it within`)), lines.join('\n'));
    await waitFor('the tunnel to close', async () => !(await tunnelOf(id)), 20000);
    // A debug session that starts with it after all is told so in the log.
    java.sessionStarted({ name: 'late', configuration: launch });
    assert.ok(lines.some((l) => l.includes(`started with session ${id}, which is released already`)), lines.join('\n'));
    await java.sessionEnded({ name: 'late', configuration: launch });
    assert.equal(java.releases, 1);
  });

  test('java provider: a claimed session stays until its debug session ends; dispose releases the rest', async () => {
    const { java, lines } = javaProvider(200);
    const claimed = await java.resolveDebugConfigurationWithSubstitutedVariables(undefined, { ...javaLaunch });
    java.sessionStarted({ name: 'Sample', configuration: claimed });
    const pending = await java.resolveDebugConfigurationWithSubstitutedVariables(undefined, { ...javaLaunch, name: 'other' });
    await waitFor('the unclaimed one to be released', () => java.releases === 1, 10000);
    assert.ok(await tunnelOf(claimed.tetherSessionId), 'the claimed session outlives the timeout');
    await java.sessionEnded({ name: 'Sample', configuration: claimed });
    assert.equal(java.releases, 2);
    assert.ok(lines.some((l) => l.includes(`released session ${claimed.tetherSessionId} (debug session "Sample" ended)`)), lines.join('\n'));
    await waitFor('the tunnel to close', async () => !(await tunnelOf(claimed.tetherSessionId)), 20000);
    assert.ok(!(await tunnelOf(pending.tetherSessionId)));

    const left = await java.resolveDebugConfigurationWithSubstitutedVariables(undefined, { ...javaLaunch });
    java.sessionStarted({ name: 'Sample', configuration: left });
    await java.dispose();
    assert.equal(java.releases, 3);
    assert.deepEqual(java.prepared.ids(), []);
    await waitFor('the tunnel to close', async () => !(await tunnelOf(left.tetherSessionId)), 20000);
  });

  test('window/logMessage reaches the client', () => {
    assert.ok(logs.some((l) => /client initialized client=node-test/.test(l)), logs.slice(0, 5).join('\n'));
  });
});

describe('java launch configurations (vscode-java-debug contract)', () => {
  const prep = { sessionId: 's-1', vmArgs: ['-javaagent:/c/tether agent.jar', '-Da=b'], env: { TETHER_AGENT_TOKEN: 't' } };

  test('vmArgs as a string stay a string, Tether first, quoted', () => {
    const out = applyPrepared({ type: 'java', request: 'launch', vmArgs: '-Xmx1g -Dx="a b"' }, prep);
    assert.equal(out.vmArgs, '"-javaagent:/c/tether agent.jar" -Da=b -Xmx1g -Dx="a b"');
    assert.equal(out.tetherSessionId, 's-1');
  });

  test('no vmArgs and no env', () => {
    const out = applyPrepared({ type: 'java', request: 'launch' }, prep);
    assert.equal(out.vmArgs, '"-javaagent:/c/tether agent.jar" -Da=b');
    assert.deepEqual(out.env, { TETHER_AGENT_TOKEN: 't' });
  });

  test("Tether's env wins over the user's", () => {
    const out = applyPrepared({ type: 'java', request: 'launch', env: { TETHER_AGENT_TOKEN: 'x', A: '1' } }, prep);
    assert.deepEqual(out.env, { TETHER_AGENT_TOKEN: 't', A: '1' });
  });

  test('interconnect off: nothing to add', () => {
    const l = { type: 'java', request: 'launch', vmArgs: ['-Xmx1g'] };
    assert.deepEqual(applyPrepared(l, { sessionId: 's-2' }), { ...l, tetherSessionId: 's-2' });
  });

  test('matching run configurations', () => {
    const configs = [
      { name: 'a', type: 'java', java: { mainClass: 'com.x.Main' }, interconnect: { enabled: true, proxy: 'p' } },
      { name: 'b', type: 'java', java: { mainClass: 'com.x.Other' }, interconnect: { enabled: false } },
    ];
    assert.equal(matchRunConfig({ type: 'java', request: 'launch', mainClass: 'com.x.Main' }, configs)?.name, 'a');
    assert.equal(matchRunConfig({ type: 'java', request: 'launch', mainClass: 'mod/com.x.Main' }, configs)?.name, 'a');
    assert.equal(matchRunConfig({ type: 'java', request: 'launch', mainClass: 'com.x.Other' }, configs), undefined);
    assert.equal(matchRunConfig({ type: 'java', request: 'launch', mainClass: 'com.x.Main', tetherConfig: false }, configs), undefined);
    assert.equal(matchRunConfig({ type: 'java', request: 'launch', tetherConfig: 'b' }, configs)?.name, 'b');
    assert.throws(() => matchRunConfig({ type: 'java', request: 'launch', tetherConfig: 'zz' }, configs), /zz/);
  });
});
