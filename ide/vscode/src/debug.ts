// Debugging: a DebugConfigurationProvider that gives `java` launches
// (vscode-java-debug) the interconnect of their run configuration, and the
// `tether` debug type, served by `tether dap`.

import * as vscode from 'vscode';
import { JavaLaunchConfig, applyPrepared, matchRunConfig } from './javaconfig';
import { Backend } from './backend';
import { CLAIM_TIMEOUT_MS, PreparedSessions } from './prepared';

export class JavaInterconnectProvider implements vscode.DebugConfigurationProvider, vscode.Disposable {
  /** Prepared sessions by id: released when their debug session ends, or when none starts in time. */
  readonly prepared: PreparedSessions;
  releases = 0;

  constructor(
    private backend: Backend,
    claimTimeoutMs = CLAIM_TIMEOUT_MS,
  ) {
    this.prepared = new PreparedSessions((id, why) => this.release(id, why), claimTimeoutMs);
  }

  async resolveDebugConfigurationWithSubstitutedVariables(
    _folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration,
    token?: vscode.CancellationToken,
  ): Promise<vscode.DebugConfiguration | undefined> {
    if (config.request !== 'launch' || !vscode.workspace.getConfiguration('tether').get<boolean>('java.applyToDebugSessions', true)) {
      return config;
    }
    const launch = config as unknown as JavaLaunchConfig;
    let rc;
    let prep;
    try {
      const client = await this.backend.client();
      rc = matchRunConfig(launch, (await client.listConfigs()).configs);
      if (!rc) {
        return config;
      }
      const name = rc.name;
      prep = await this.backend.withProgress(`Tether: connecting ${name}`, (onProgress, ct) => client.prepare(name, false, onProgress, ct), token);
    } catch (e) {
      // Do not start the app without the interconnect it was configured with.
      await this.backend.showError(`debug session "${config.name}"`, e);
      return undefined;
    }
    const client = await this.backend.client();
    this.prepared.add(prep.sessionId);
    void this.backend.refreshTunnels(client);
    this.backend.log(`java debug session "${config.name}": interconnect of ${rc.name} applied (session ${prep.sessionId})`);
    return applyPrepared(launch, prep) as vscode.DebugConfiguration;
  }

  /** Claims the prepared session of a debug session that started: it is released when that session ends. */
  sessionStarted(s: vscode.DebugSession): void {
    const id = s.configuration.tetherSessionId as string | undefined;
    if (id && !this.prepared.claim(id) && !this.prepared.ids().includes(id)) {
      this.backend.log(`debug session "${s.name}" started with session ${id}, which is released already: its app has no interconnect`);
    }
  }

  /** Releases the prepared session of a debug session that ended. */
  async sessionEnded(s: vscode.DebugSession): Promise<void> {
    const id = s.configuration.tetherSessionId as string | undefined;
    if (id) {
      await this.prepared.end(id, `debug session "${s.name}" ended`);
    }
  }

  /** The backend exited: the sessions it held are gone with it. */
  backendExited(): void {
    this.prepared.clear();
  }

  /** Releases every prepared session not released yet. */
  dispose(): Promise<void> {
    return this.prepared.releaseAll('the extension is deactivated');
  }

  /** launch/release on the running backend (none running: the session is gone already); logs, never throws. */
  private async release(id: string, why: string): Promise<void> {
    try {
      const client = await this.backend.running();
      if (!client) {
        return;
      }
      await client.release(id);
      this.releases++;
      this.backend.log(`released session ${id} (${why})`);
      await this.backend.refreshTunnels(client);
    } catch (e) {
      this.backend.log(`release ${id} (${why}): ${e instanceof Error ? e.message : e}`);
    }
  }
}

/** Runs `tether dap` for `tether` debug sessions. */
export class TetherDapFactory implements vscode.DebugAdapterDescriptorFactory {
  constructor(private backend: Backend) {}

  createDebugAdapterDescriptor(session: vscode.DebugSession): vscode.ProviderResult<vscode.DebugAdapterDescriptor> {
    const ws = session.workspaceFolder?.uri.fsPath ?? this.backend.workspace;
    const args = ['dap'];
    if (ws) {
      args.push('--workspace', ws);
    }
    this.backend.log(`debug session "${session.name}": ${this.backend.tetherPath()} ${args.join(' ')}`);
    return new vscode.DebugAdapterExecutable(this.backend.tetherPath(), args, ws ? { cwd: ws } : undefined);
  }
}

/** Fills in a `tether` attach configuration started without launch.json. */
export class TetherDebugConfigurationProvider implements vscode.DebugConfigurationProvider {
  resolveDebugConfiguration(_f: vscode.WorkspaceFolder | undefined, c: vscode.DebugConfiguration): vscode.DebugConfiguration | undefined {
    if (!c.type && !c.request) {
      return undefined; // no launch.json: let VS Code offer initialConfigurations
    }
    return { ...c, request: c.request ?? 'attach' };
  }
}
