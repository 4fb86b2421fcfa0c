// The Tether extension: run configurations of tether.yaml with the
// interconnect toggle, launches through `tether serve`, and debugging
// through the tunnel (java launches and the `tether` debug type).

import * as vscode from 'vscode';
import { Backend } from './backend';
import { JavaInterconnectProvider, TetherDapFactory, TetherDebugConfigurationProvider } from './debug';
import { isResponseError } from './client';
import { ErrorCodes, LaunchStateParams } from './protocol';
import { LaunchInfo, Node, RunConfigTree } from './tree';

/** What activate returns: for other extensions and the integration tests. */
export interface TetherApi {
  backend: Backend;
  tree: RunConfigTree;
  java: JavaInterconnectProvider;
}

export async function activate(ctx: vscode.ExtensionContext): Promise<TetherApi> {
  const ws = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const backend = new Backend(ws);
  const tree = new RunConfigTree();
  const java = new JavaInterconnectProvider(backend);
  // java before backend: its releases go out before the backend is stopped.
  ctx.subscriptions.push(java, backend);
  backend.onExit = () => java.backendExited();
  deactivating = () => java.dispose();

  const refresh = () => tree.refresh(async () => (await backend.client()).listConfigs());
  const view = vscode.window.createTreeView('tether.runConfigs', { treeDataProvider: tree, showCollapseAll: false });
  ctx.subscriptions.push(view);

  const configName = (arg: unknown): string | undefined => {
    if (typeof arg === 'string') {
      return arg;
    }
    const n = arg as Node | undefined;
    return n?.kind === 'config' ? n.config.name : undefined;
  };
  const pickConfig = async (arg: unknown, filter?: (t: string) => boolean): Promise<string | undefined> => {
    const name = configName(arg);
    if (name) {
      return name;
    }
    const items = tree.configs.filter((c) => !filter || filter(c.type)).map((c) => c.name);
    return vscode.window.showQuickPick(items, { title: 'Tether: run configuration' });
  };

  const setInterconnect = async (name: string, enabled: boolean, proxy?: string) => {
    try {
      const c = await backend.client();
      try {
        await c.setInterconnect(name, enabled, proxy, tree.revision || undefined);
      } catch (e) {
        if (!isResponseError(e) || e.code !== ErrorCodes.Conflict) {
          throw e;
        }
        // tether.yaml changed since the list was read: re-read it and apply the toggle to it.
        await refresh();
        await c.setInterconnect(name, enabled, proxy, tree.revision || undefined);
      }
      backend.log(`interconnect of ${name} ${enabled ? 'on' : 'off'}${proxy ? ` through ${proxy}` : ''}`);
    } catch (e) {
      await backend.showError(`interconnect of ${name}`, e);
    }
    await refresh();
  };

  ctx.subscriptions.push(
    view.onDidChangeCheckboxState(async (e) => {
      for (const [n, state] of e.items) {
        if (n.kind === 'config') {
          await setInterconnect(n.config.name, state === vscode.TreeItemCheckboxState.Checked);
        }
      }
    }),
  );

  const launchConfig = async (arg: unknown, debug: boolean) => {
    const name = await pickConfig(arg, debug ? (t) => t === 'java' : undefined);
    if (!name) {
      return undefined;
    }
    try {
      const c = await backend.client();
      starting.push(name);
      const r = await backend
        .withProgress(`Tether: starting ${name}`, (p, t) => c.start(name, debug, p, t))
        .then(
          (v) => (starting.splice(starting.indexOf(name), 1), v),
          (e) => {
            starting.splice(starting.indexOf(name), 1);
            throw e;
          },
        );
      tree.updateLaunch({ ...(tree.launches.get(r.launchId) ?? { launchId: r.launchId, state: 'running' }), config: name });
      return r.launchId;
    } catch (e) {
      await backend.showError(`start ${name}`, e);
      return undefined;
    }
  };

  const attach = async (l: LaunchInfo) => {
    if (!l.debugAddress) {
      return false;
    }
    const i = l.debugAddress.lastIndexOf(':');
    return vscode.debug.startDebugging(vscode.workspace.workspaceFolders?.[0], {
      type: 'java',
      request: 'attach',
      name: `${l.config} (Tether ${l.launchId})`,
      hostName: l.debugAddress.slice(0, i),
      port: Number(l.debugAddress.slice(i + 1)),
    });
  };

  // Configs of launch/start requests not answered yet: launch/state comes
  // before the reply that names the launch.
  const starting: string[] = [];
  backend.onLaunchState = (s: LaunchStateParams) => {
    const prev = tree.launches.get(s.launchId);
    const l: LaunchInfo = { ...prev, ...s, config: prev?.config || (s.state === 'starting' ? starting[0] : '') || '' };
    tree.updateLaunch(l);
    if (s.state === 'debugReady') {
      void vscode.window
        .showInformationMessage(`Tether: ${l.config || s.launchId} is ready for a debugger at ${s.debugAddress}.`, 'Attach debugger')
        .then((a) => (a ? attach(tree.launches.get(s.launchId) ?? l) : undefined));
    } else if (s.state === 'failed') {
      void vscode.window.showErrorMessage(`Tether: ${l.config || s.launchId} failed: ${s.message}`);
    }
  };

  ctx.subscriptions.push(
    vscode.commands.registerCommand('tether.refresh', refresh),
    vscode.commands.registerCommand('tether.showLog', () => backend.output.show(true)),
    vscode.commands.registerCommand('tether.restart', async () => {
      await backend.restart();
      await refresh();
    }),
    vscode.commands.registerCommand('tether.toggleInterconnect', async (arg?: unknown) => {
      const name = await pickConfig(arg);
      const rc = tree.configs.find((c) => c.name === name);
      if (rc) {
        await setInterconnect(rc.name, !rc.interconnect?.enabled);
      }
    }),
    vscode.commands.registerCommand('tether.pickProxy', async (arg?: unknown, proxyArg?: string) => {
      const name = await pickConfig(arg);
      const rc = tree.configs.find((c) => c.name === name);
      if (!rc) {
        return;
      }
      let proxy = proxyArg;
      if (!proxy) {
        const proxies = (await (await backend.client()).listProxies()).proxies;
        const items = proxies.map((p) => ({
          label: p.name,
          description: p.ssh ? `ssh ${p.ssh.user ? p.ssh.user + '@' : ''}${p.ssh.host}${p.ssh.port ? ':' + p.ssh.port : ''}` : 'kubernetes',
          picked: p.name === rc.interconnect?.proxy,
        }));
        proxy = (await vscode.window.showQuickPick(items, { title: `Tether: proxy for ${rc.name}` }))?.label;
      }
      if (proxy) {
        await setInterconnect(rc.name, rc.interconnect?.enabled ?? true, proxy);
      }
    }),
    vscode.commands.registerCommand('tether.launch', (arg?: unknown) => launchConfig(arg, false)),
    vscode.commands.registerCommand('tether.launchDebug', (arg?: unknown) => launchConfig(arg, true)),
    vscode.commands.registerCommand('tether.stop', async (arg?: Node | string) => {
      const id = typeof arg === 'string' ? arg : arg?.kind === 'launch' ? arg.launch.launchId : undefined;
      if (id) {
        try {
          await (await backend.client()).stop(id);
        } catch (e) {
          await backend.showError(`stop ${id}`, e);
        }
      }
    }),
    vscode.commands.registerCommand('tether.attachDebugger', async (arg?: Node | string) => {
      const id = typeof arg === 'string' ? arg : arg?.kind === 'launch' ? arg.launch.launchId : undefined;
      const l = id ? tree.launches.get(id) : undefined;
      return l ? attach(l) : false;
    }),
    vscode.debug.registerDebugConfigurationProvider('java', java),
    vscode.debug.onDidStartDebugSession((s) => java.sessionStarted(s)),
    vscode.debug.onDidTerminateDebugSession((s) => java.sessionEnded(s)),
    vscode.debug.registerDebugAdapterDescriptorFactory('tether', new TetherDapFactory(backend)),
    vscode.debug.registerDebugConfigurationProvider('tether', new TetherDebugConfigurationProvider()),
  );

  if (ws) {
    const watcher = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(ws, 'tether.yaml'));
    watcher.onDidChange(refresh);
    watcher.onDidCreate(refresh);
    watcher.onDidDelete(refresh);
    ctx.subscriptions.push(watcher);
    await refresh();
    if (tree.error) {
      void backend.showError('list run configurations', new Error(tree.error));
    }
  }
  return { backend, tree, java };
}

let deactivating: (() => Promise<void>) | undefined;

/** Releases the prepared sessions while the backend still runs (VS Code disposes the subscriptions after this). */
export async function deactivate(): Promise<void> {
  await deactivating?.();
}
