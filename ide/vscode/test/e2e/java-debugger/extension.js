// Test-only stand-in for vscode-java-debug (not reachable here): debug type
// `java` honouring its launch.json contract — mainClass, classPaths, vmArgs
// (a string or an array), env, args, cwd — that really runs `java`, and an
// attach that does the JDWP handshake with hostName:port. Enough DAP for
// VS Code to run a session: initialize, launch/attach, configurationDone,
// threads, disconnect; output, exited and terminated events.
const vscode = require('vscode');
const { spawn } = require('child_process');
const net = require('net');
const path = require('path');

/** Splits a vmArgs/args string as vscode-java-debug does: blanks separate, "…" groups. */
function splitArgs(s) {
  const out = [];
  let cur = '';
  let quoted = false;
  let any = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && s[i + 1] === '"') {
      cur += '"';
      i++;
      any = true;
    } else if (c === '"') {
      quoted = !quoted;
      any = true;
    } else if (/\s/.test(c) && !quoted) {
      if (any) out.push(cur);
      cur = '';
      any = false;
    } else {
      cur += c;
      any = true;
    }
  }
  if (any) out.push(cur);
  return out;
}
const list = (v) => (Array.isArray(v) ? v.map(String) : typeof v === 'string' ? splitArgs(v) : []);

class JavaAdapter {
  constructor(config) {
    this.config = config;
    this.emitter = new vscode.EventEmitter();
    this.onDidSendMessage = this.emitter.event;
    this.seq = 1;
  }
  send(m) {
    this.emitter.fire({ seq: this.seq++, ...m });
  }
  respond(req, body, message) {
    this.send({ type: 'response', request_seq: req.seq, command: req.command, success: !message, message, body: body || {} });
  }
  event(event, body) {
    this.send({ type: 'event', event, body: body || {} });
  }
  output(category, text) {
    this.event('output', { category, output: text });
  }
  handleMessage(m) {
    if (m.type !== 'request') return;
    try {
      switch (m.command) {
        case 'initialize':
          this.respond(m, { supportsConfigurationDoneRequest: true });
          this.event('initialized');
          return;
        case 'launch':
          return this.launch(m);
        case 'attach':
          return this.attach(m);
        case 'threads':
          return this.respond(m, { threads: [] });
        case 'disconnect':
        case 'terminate':
          this.stop();
          this.respond(m);
          return;
        default:
          return this.respond(m);
      }
    } catch (e) {
      this.respond(m, undefined, String(e && e.message));
    }
  }
  launch(m) {
    const a = m.arguments;
    const argv = [...list(a.vmArgs)];
    const cp = Array.isArray(a.classPaths) ? a.classPaths : [];
    if (cp.length) argv.push('-cp', cp.join(path.delimiter));
    argv.push(String(a.mainClass).replace(/^.*\//, ''), ...list(a.args));
    const env = { ...process.env, ...(a.env || {}) };
    const java = a.javaExec || 'java';
    this.output('console', `${java} ${argv.join(' ')}\n`);
    const p = spawn(java, argv, { cwd: a.cwd || undefined, env });
    this.proc = p;
    p.stdout.on('data', (d) => this.output('stdout', d.toString()));
    p.stderr.on('data', (d) => this.output('stderr', d.toString()));
    p.on('error', (e) => {
      this.output('stderr', `cannot run ${java}: ${e.message}\n`);
      this.event('terminated');
    });
    p.on('exit', (code, signal) => {
      this.proc = undefined;
      this.event('exited', { exitCode: code === null ? 128 : code });
      this.output('console', `java exited: ${signal || code}\n`);
      this.event('terminated');
    });
    this.respond(m);
  }
  attach(m) {
    const a = m.arguments;
    const host = a.hostName || '127.0.0.1';
    const sock = net.connect(Number(a.port), host);
    this.sock = sock;
    let got = '';
    const fail = (msg) => {
      sock.destroy();
      this.respond(m, undefined, msg);
    };
    sock.setTimeout(20000, () => fail(`no JDWP handshake from ${host}:${a.port}`));
    sock.on('connect', () => sock.write('JDWP-Handshake'));
    sock.on('error', (e) => fail(`attach ${host}:${a.port}: ${e.message}`));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      if (got.length >= 14) {
        sock.setTimeout(0);
        if (got.startsWith('JDWP-Handshake')) {
          this.output('console', `JDWP handshake ok with ${host}:${a.port}\n`);
          this.respond(m);
        } else {
          fail(`${host}:${a.port} is not a JDWP port`);
        }
      }
    });
    sock.on('close', () => this.event('terminated'));
  }
  stop() {
    if (this.proc) this.proc.kill('SIGKILL');
    if (this.sock) this.sock.destroy();
  }
  dispose() {
    this.stop();
  }
}

exports.activate = (ctx) => {
  ctx.subscriptions.push(
    vscode.debug.registerDebugAdapterDescriptorFactory('java', {
      createDebugAdapterDescriptor: (s) => new vscode.DebugAdapterInlineImplementation(new JavaAdapter(s.configuration)),
    }),
  );
};
exports.deactivate = () => {};
