// TetherClient runs `tether serve` on stdio and speaks its JSON-RPC protocol
// with vscode-jsonrpc. It does not import vscode: the extension gives it UI
// callbacks (Hooks), and the node --test layer drives it directly.

import { ChildProcess, spawn } from 'child_process';
import { pathToFileURL } from 'url';
import * as rpc from 'vscode-jsonrpc/node';
import {
  ConnectionRecord,
  InitializeResult,
  LaunchOutputParams,
  LaunchPrepareResult,
  LaunchStateParams,
  LogMessageParams,
  MessageActionItem,
  ProxyListResult,
  RunConfigListResult,
  SaveResult,
  ShowInputRequestParams,
  ShowMessageRequestParams,
  TunnelStatus,
  WorkDoneProgress,
  protocolMajor,
} from './protocol';

/** What the backend asks of the UI. Every hook is optional. */
export interface Hooks {
  /** window/logMessage, and the backend's stderr (type 4). */
  log?(type: number, message: string): void;
  /** window/showMessageRequest: resolve with the chosen action, or null. */
  showMessageRequest?(p: ShowMessageRequestParams): Promise<MessageActionItem | null>;
  /** window/showInputRequest: resolve with the typed value, or null (cancelled). */
  showInputRequest?(p: ShowInputRequestParams): Promise<string | null>;
  /** interconnect/status notification: one tunnel changed state. */
  tunnelStatus?(s: TunnelStatus): void;
  /** interconnect/connection notification: the connection log. */
  connection?(r: ConnectionRecord): void;
  launchState?(s: LaunchStateParams): void;
  launchOutput?(o: LaunchOutputParams): void;
  /** The backend process ended (code null: killed by a signal). */
  exit?(code: number | null, signal: string | null): void;
}

export interface StartOptions {
  /** The tether binary. */
  tetherPath: string;
  /** The workspace directory (it holds tether.yaml). */
  workspace: string;
  logLevel?: string;
  clientName?: string;
  clientVersion?: string;
  hooks?: Hooks;
  env?: NodeJS.ProcessEnv;
}

/** Reports $/progress of one request: begin, report…, end. */
export type ProgressHandler = (p: WorkDoneProgress) => void;

let tokenCounter = 0;

/** An error reply of the backend (code, message, data.category/problems). */
export function isResponseError(e: unknown): e is rpc.ResponseError<{ category?: string }> {
  return e instanceof rpc.ResponseError;
}

export class TetherClient {
  readonly connection: rpc.MessageConnection;
  readonly process: ChildProcess;
  initializeResult!: InitializeResult;
  private exited: Promise<number | null>;
  private disposed = false;

  private constructor(proc: ChildProcess, readonly hooks: Hooks) {
    this.process = proc;
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        hooks.exit?.(code, signal);
        resolve(code);
      });
    });
    this.connection = rpc.createMessageConnection(
      new rpc.StreamMessageReader(proc.stdout!),
      new rpc.StreamMessageWriter(proc.stdin!),
    );
    const c = this.connection;
    c.onNotification('window/logMessage', (p: LogMessageParams) => hooks.log?.(p.type, p.message));
    c.onNotification('interconnect/status', (p: TunnelStatus) => hooks.tunnelStatus?.(p));
    c.onNotification('interconnect/connection', (p: ConnectionRecord) => hooks.connection?.(p));
    c.onNotification('launch/state', (p: LaunchStateParams) => hooks.launchState?.(p));
    c.onNotification('launch/output', (p: LaunchOutputParams) => hooks.launchOutput?.(p));
    c.onRequest('window/showMessageRequest', async (p: ShowMessageRequestParams) =>
      hooks.showMessageRequest ? hooks.showMessageRequest(p) : null,
    );
    c.onRequest('window/showInputRequest', async (p: ShowInputRequestParams) => {
      const v = hooks.showInputRequest ? await hooks.showInputRequest(p) : null;
      return v === null || v === undefined ? null : { value: v };
    });
    proc.stdin!.on('error', () => {}); // EPIPE after the backend died: reported by exit
    c.listen();
  }

  /** Starts `tether serve` for the workspace and initializes it. */
  static async start(o: StartOptions): Promise<TetherClient> {
    const args = ['serve', '--workspace', o.workspace, '--ppid', String(process.pid)];
    if (o.logLevel) {
      args.push('--log-level', o.logLevel);
    }
    const proc = spawn(o.tetherPath, args, { stdio: ['pipe', 'pipe', 'pipe'], env: o.env ?? process.env });
    const hooks = o.hooks ?? {};
    const spawned = new Promise<void>((resolve, reject) => {
      proc.once('spawn', resolve);
      proc.once('error', (e) => reject(new Error(`cannot start ${o.tetherPath} serve: ${e.message} (set tether.path)`)));
    });
    await spawned;
    let stderr = '';
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (d: string) => {
      stderr += d;
      let i;
      while ((i = stderr.indexOf('\n')) >= 0) {
        hooks.log?.(4, stderr.slice(0, i));
        stderr = stderr.slice(i + 1);
      }
    });
    const client = new TetherClient(proc, hooks);
    try {
      const res = await client.connection.sendRequest<InitializeResult>('initialize', {
        processId: process.pid,
        rootUri: pathToFileURL(o.workspace).href,
        clientInfo: { name: o.clientName ?? 'tether-vscode', version: o.clientVersion ?? '0' },
      });
      if (res.protocolVersion.split('.')[0] !== protocolMajor) {
        throw new Error(`tether speaks protocol ${res.protocolVersion}; this extension needs ${protocolMajor}.x`);
      }
      client.initializeResult = res;
      await client.connection.sendNotification('initialized', {});
    } catch (e) {
      client.kill();
      throw e;
    }
    return client;
  }

  /** Sends a request; with onProgress it carries a workDoneToken and $/progress goes to onProgress. */
  async request<R>(method: string, params: object, onProgress?: ProgressHandler, token?: rpc.CancellationToken): Promise<R> {
    if (!onProgress) {
      return this.connection.sendRequest<R>(method, params, token ?? rpc.CancellationToken.None);
    }
    const workDoneToken = `vscode-${process.pid}-${++tokenCounter}`;
    const sub = this.connection.onProgress(new rpc.ProgressType<WorkDoneProgress>(), workDoneToken, onProgress);
    try {
      return await this.connection.sendRequest<R>(method, { ...params, workDoneToken }, token ?? rpc.CancellationToken.None);
    } finally {
      sub.dispose();
    }
  }

  listConfigs(): Promise<RunConfigListResult> {
    return this.request('runConfig/list', {});
  }

  listProxies(): Promise<ProxyListResult> {
    return this.request('proxy/list', {});
  }

  setInterconnect(config: string, enabled: boolean, proxy?: string, revision?: string): Promise<SaveResult> {
    return this.request('interconnect/set', { config, enabled, proxy, revision });
  }

  status(): Promise<{ tunnels: TunnelStatus[] }> {
    return this.request('interconnect/status', {});
  }

  prepare(config: string, debug: boolean, onProgress?: ProgressHandler, token?: rpc.CancellationToken): Promise<LaunchPrepareResult> {
    return this.request('launch/prepare', { config, debug }, onProgress, token);
  }

  release(sessionId: string): Promise<null> {
    return this.request('launch/release', { sessionId });
  }

  start(config: string, debug: boolean, onProgress?: ProgressHandler, token?: rpc.CancellationToken): Promise<{ launchId: string }> {
    return this.request('launch/start', { config, debug }, onProgress, token);
  }

  stop(launchId: string): Promise<null> {
    return this.request('launch/stop', { launchId });
  }

  get running(): boolean {
    return !this.disposed && this.process.exitCode === null && this.process.signalCode === null;
  }

  /** Shuts the backend down (shutdown, exit) and waits for it; kills it after timeoutMs. */
  async dispose(timeoutMs = 10000): Promise<number | null> {
    if (this.disposed) {
      return this.exited;
    }
    this.disposed = true;
    const timer = setTimeout(() => this.kill(), timeoutMs);
    try {
      if (this.process.exitCode === null) {
        await this.connection.sendRequest('shutdown');
        await this.connection.sendNotification('exit');
      }
    } catch {
      this.kill();
    }
    const code = await this.exited;
    clearTimeout(timer);
    this.connection.dispose();
    return code;
  }

  private kill(): void {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGKILL');
    }
  }
}
