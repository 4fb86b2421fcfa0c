// The "Run Configurations" view: one item per run configuration of
// tether.yaml, with the interconnect toggle as the item's checkbox, and the
// app launches of this window under it.

import * as vscode from 'vscode';
import { LaunchStateParams, RunConfig } from './protocol';

export interface LaunchInfo extends LaunchStateParams {
  config: string;
}

export type Node = { kind: 'config'; config: RunConfig } | { kind: 'launch'; launch: LaunchInfo } | { kind: 'problem'; text: string };

export class RunConfigTree implements vscode.TreeDataProvider<Node> {
  private changed = new vscode.EventEmitter<Node | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  configs: RunConfig[] = [];
  revision = '';
  problems: string[] = [];
  error = '';
  readonly launches = new Map<string, LaunchInfo>();

  /** Loads the list through load (runConfig/list) and redraws. */
  async refresh(load: () => Promise<{ configs: RunConfig[]; revision: string; problems?: { path: string; message: string; line?: number }[] }>): Promise<void> {
    try {
      const res = await load();
      this.configs = res.configs ?? [];
      this.revision = res.revision;
      this.problems = (res.problems ?? []).map((p) => `${p.line ? `tether.yaml:${p.line}: ` : ''}${p.path}: ${p.message}`);
      this.error = '';
    } catch (e) {
      this.configs = [];
      this.error = e instanceof Error ? e.message : String(e);
    }
    this.changed.fire(undefined);
  }

  updateLaunch(l: LaunchInfo): void {
    this.launches.set(l.launchId, l);
    this.changed.fire(undefined);
  }

  getChildren(n?: Node): Node[] {
    if (!n) {
      const out: Node[] = [];
      if (this.error) {
        out.push({ kind: 'problem', text: this.error });
      }
      for (const p of this.problems) {
        out.push({ kind: 'problem', text: p });
      }
      for (const c of this.configs) {
        out.push({ kind: 'config', config: c });
      }
      return out;
    }
    if (n.kind === 'config') {
      return [...this.launches.values()]
        .filter((l) => l.config === n.config.name && l.state !== 'exited' && l.state !== 'failed')
        .map((launch) => ({ kind: 'launch', launch }));
    }
    return [];
  }

  getTreeItem(n: Node): vscode.TreeItem {
    if (n.kind === 'problem') {
      const it = new vscode.TreeItem(n.text);
      it.iconPath = new vscode.ThemeIcon('warning');
      it.tooltip = n.text;
      return it;
    }
    if (n.kind === 'launch') {
      const l = n.launch;
      const it = new vscode.TreeItem(`${l.launchId}: ${l.state}${l.debugAddress ? ` (debugger: ${l.debugAddress})` : ''}`);
      it.contextValue = `launch.${l.state}`;
      it.iconPath = new vscode.ThemeIcon(l.state === 'debugReady' ? 'debug' : 'play-circle');
      return it;
    }
    const c = n.config;
    const on = !!c.interconnect?.enabled;
    const hasLaunches = this.getChildren(n).length > 0;
    const it = new vscode.TreeItem(c.name, hasLaunches ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None);
    it.id = `config:${c.name}`;
    it.description = `${c.type} · interconnect ${on ? 'on' : 'off'}${c.interconnect?.proxy ? ` · ${c.interconnect.proxy}` : ''}`;
    it.tooltip = new vscode.MarkdownString(
      `**${c.name}** (${c.type})\n\nInterconnect: ${on ? 'on' : 'off'}${c.interconnect?.proxy ? ` through proxy \`${c.interconnect.proxy}\`` : ''}\n\nThe checkbox turns the interconnect on or off (saved in tether.yaml).`,
    );
    it.checkboxState = on ? vscode.TreeItemCheckboxState.Checked : vscode.TreeItemCheckboxState.Unchecked;
    it.contextValue = `runConfig.${c.type}`;
    it.iconPath = new vscode.ThemeIcon(on ? 'plug' : 'debug-disconnect');
    return it;
  }
}
