// Backend owns the `tether serve` process of this window and its UI: the
// Tether output channel (backend log and connection log), the status bar
// item (tunnel health) and the answers to the backend's questions.

import * as path from 'path';
import * as vscode from 'vscode';
import * as rpc from 'vscode-jsonrpc/node';
import { Hooks, ProgressHandler, TetherClient, isResponseError } from './client';
import { ConnectionRecord, LaunchOutputParams, LaunchStateParams, TunnelStatus } from './protocol';

const levelNames: Record<number, string> = { 1: 'error', 2: 'warn', 3: 'info', 4: 'log' };

export class Backend implements vscode.Disposable {
  readonly output: vscode.OutputChannel;
  readonly status: vscode.StatusBarItem;
  /** Every line written to the output channel (the extension API exposes it for tests). */
  readonly lines: string[] = [];
  /** Tunnel state by session id, from interconnect/status. */
  readonly tunnels = new Map<string, TunnelStatus>();
  /** Status bar texts in the order shown (for tests). */
  readonly statusHistory: string[] = [];
  onLaunchState?: (s: LaunchStateParams) => void;
  /** Called when tether serve exited (also after stop): what it held is gone. */
  onExit?: () => void;
  private current?: Promise<TetherClient>;
  private stopping = false;

  constructor(readonly workspace: string | undefined) {
    this.output = vscode.window.createOutputChannel('Tether');
    this.status = vscode.window.createStatusBarItem('tether.status', vscode.StatusBarAlignment.Left, 50);
    this.status.name = 'Tether';
    this.status.command = 'tether.showLog';
    this.renderStatus('starting');
    this.status.show();
  }

  tetherPath(): string {
    const p = vscode.workspace.getConfiguration('tether').get<string>('path', 'tether') || 'tether';
    return p.includes(path.sep) && this.workspace && !path.isAbsolute(p) ? path.join(this.workspace, p) : p;
  }

  log(line: string): void {
    const l = `[${new Date().toISOString().slice(11, 23)}] ${line}`;
    this.lines.push(l);
    if (this.lines.length > 5000) {
      this.lines.splice(0, 1000);
    }
    this.output.appendLine(l);
  }

  /** The running backend, started on first use and restarted after it died. */
  client(): Promise<TetherClient> {
    if (!this.workspace) {
      return Promise.reject(new Error('Tether needs a workspace folder (it holds tether.yaml)'));
    }
    if (!this.current) {
      this.current = this.spawn();
      this.current.catch(() => (this.current = undefined));
    }
    return this.current;
  }

  /** The backend if it is running or starting; never starts one (for work that only matters to a running one). */
  running(): Promise<TetherClient | undefined> {
    return this.current?.catch(() => undefined) ?? Promise.resolve(undefined);
  }

  private async spawn(): Promise<TetherClient> {
    const bin = this.tetherPath();
    this.log(`starting ${bin} serve --workspace ${this.workspace}`);
    const c = await TetherClient.start({
      tetherPath: bin,
      workspace: this.workspace!,
      logLevel: vscode.workspace.getConfiguration('tether').get<string>('logLevel', 'info'),
      clientName: 'tether-vscode',
      clientVersion: vscode.extensions.getExtension('tether-dev.tether')?.packageJSON.version ?? '0',
      hooks: this.hooks(),
    });
    const r = c.initializeResult;
    this.log(`connected to ${r.serverInfo.name} ${r.serverInfo.version} (protocol ${r.protocolVersion}, workspace ${r.capabilities.workspace})`);
    await this.refreshTunnels(c);
    return c;
  }

  /**
   * Reads interconnect/status: the backend notifies only state changes of
   * open tunnels (reconnecting, connected again), so opening and closing
   * ones are read after prepare, release, start and the end of a launch.
   */
  async refreshTunnels(c?: TetherClient): Promise<void> {
    try {
      const client = c ?? (await this.current);
      if (!client) {
        return;
      }
      const { tunnels } = await client.status();
      this.tunnels.clear();
      for (const t of tunnels) {
        this.tunnels.set(t.sessionId ?? t.proxy, t);
      }
    } catch (e) {
      this.log(`interconnect/status: ${e instanceof Error ? e.message : e}`);
    }
    this.renderStatus();
  }

  private hooks(): Hooks {
    return {
      log: (type, message) => this.log(`${levelNames[type] ?? type}: ${message}`),
      showMessageRequest: async (p) => {
        const titles = (p.actions ?? []).map((a) => a.title);
        const show = p.type === 1 ? vscode.window.showErrorMessage : p.type === 2 ? vscode.window.showWarningMessage : vscode.window.showInformationMessage;
        const chosen = await show(p.message, { modal: true }, ...titles);
        return chosen ? { title: chosen } : null;
      },
      showInputRequest: async (p) => {
        const v = await vscode.window.showInputBox({ prompt: p.message, password: p.secret, ignoreFocusOut: true, title: 'Tether' });
        return v ?? null;
      },
      tunnelStatus: (s) => {
        this.log(`tunnel ${s.sessionId ?? ''} proxy=${s.proxy}: ${s.state}${s.error ? ` (${s.error})` : ''}`);
        const key = s.sessionId ?? s.proxy;
        if (s.state === 'closed') {
          this.tunnels.delete(key);
        } else {
          this.tunnels.set(key, s);
        }
        this.renderStatus();
      },
      connection: (r: ConnectionRecord) => {
        const what = r.error ? `FAILED ${r.error}` : `sent ${r.sent} B, received ${r.received} B`;
        this.log(`connection ${r.sessionId} ${r.target} via ${r.route}: ${what} (${r.durationMs} ms)`);
      },
      launchOutput: (o: LaunchOutputParams) => {
        this.output.append(o.text);
      },
      launchState: (s: LaunchStateParams) => {
        this.log(`launch ${s.launchId}: ${s.state}${s.debugAddress ? ` ${s.debugAddress}` : ''}${s.exitCode !== undefined ? ` exit code ${s.exitCode}` : ''}${s.message ? `: ${s.message}` : ''}`);
        this.onLaunchState?.(s);
        if (s.state === 'exited' || s.state === 'failed' || s.state === 'running') {
          void this.refreshTunnels();
        }
      },
      exit: (code, signal) => {
        this.current = undefined;
        this.tunnels.clear();
        this.onExit?.();
        if (!this.stopping) {
          this.log(`tether serve exited (${signal ?? `code ${code}`}); it is started again when needed`);
          this.renderStatus('stopped');
        }
      },
    };
  }

  renderStatus(phase?: 'starting' | 'stopped'): void {
    const all = [...this.tunnels.values()];
    let text: string;
    let tip: string;
    if (phase === 'starting') {
      text = '$(plug) Tether';
      tip = 'Tether: no tunnel open';
    } else if (phase === 'stopped') {
      text = '$(error) Tether: backend stopped';
      tip = 'tether serve is not running; it starts again on the next action';
    } else if (all.some((t) => t.state === 'reconnecting' || t.state === 'connecting')) {
      const t = all.find((x) => x.state === 'reconnecting' || x.state === 'connecting')!;
      text = `$(sync~spin) Tether: ${t.state} to ${t.proxy}`;
      tip = t.error ?? `${t.state} since ${t.since}`;
    } else if (all.length > 0) {
      const proxies = [...new Set(all.map((t) => t.proxy))].join(', ');
      text = `$(plug) Tether: connected to ${proxies}`;
      tip = `${all.length} tunnel(s) open`;
    } else {
      text = '$(plug) Tether';
      tip = 'Tether: no tunnel open';
    }
    this.status.text = text;
    this.status.tooltip = tip;
    if (this.statusHistory[this.statusHistory.length - 1] !== text) {
      this.statusHistory.push(text);
    }
  }

  /**
   * Runs a request with a notification progress fed by $/progress; the
   * progress's Cancel button (and token) send $/cancelRequest.
   */
  withProgress<R>(title: string, run: (onProgress: ProgressHandler, token: rpc.CancellationToken) => Promise<R>, outer?: vscode.CancellationToken): Thenable<R> {
    return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, async (progress, token) => {
      const cts = new rpc.CancellationTokenSource();
      const subs = [token.onCancellationRequested(() => cts.cancel()), outer?.onCancellationRequested(() => cts.cancel())];
      try {
        return await run((p) => {
          if (p.message) {
            progress.report({ message: p.message, increment: undefined });
            this.log(`progress: ${p.message}`);
          }
        }, cts.token);
      } finally {
        subs.forEach((s) => s?.dispose());
        cts.dispose();
      }
    });
  }

  /** Shows a backend error the way its category asks for. */
  async showError(what: string, e: unknown): Promise<void> {
    const msg = e instanceof Error ? e.message : String(e);
    this.log(`${what}: ${msg}`);
    if (isResponseError(e)) {
      if (e.code === -32800) {
        return; // cancelled: nothing to say
      }
      const data = e.data as { category?: string; problems?: { path: string; message: string; line?: number }[] } | undefined;
      const problems = (data?.problems ?? []).map((p) => `${p.path}: ${p.message}`).join('; ');
      const text = `Tether: ${what}: ${msg}${problems ? ` (${problems})` : ''}`;
      if (data?.category === 'bug') {
        const a = await vscode.window.showErrorMessage(`${text} — this is a Tether bug.`, 'Show Log');
        if (a) {
          this.output.show();
        }
        return;
      }
      if (data?.category === 'config' || e.code === 1003) {
        const a = await vscode.window.showErrorMessage(text, 'Open tether.yaml');
        if (a && this.workspace) {
          await vscode.window.showTextDocument(vscode.Uri.file(path.join(this.workspace, 'tether.yaml')));
        }
        return;
      }
    }
    void vscode.window.showErrorMessage(`Tether: ${what}: ${msg}`);
  }

  async restart(): Promise<void> {
    await this.stop();
    this.stopping = false;
    await this.client();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const c = this.current;
    this.current = undefined;
    if (c) {
      await (await c.catch(() => undefined))?.dispose();
    }
  }

  dispose(): void {
    void this.stop();
    this.status.dispose();
    this.output.dispose();
  }
}
