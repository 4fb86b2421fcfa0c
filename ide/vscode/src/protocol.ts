// Wire types of the Tether JSON-RPC protocol (see docs/protocol.md and the
// Go package protocol/, which is the source of truth). Only what the
// extension uses is declared.

export const protocolMajor = '1';

export interface InitializeResult {
  serverInfo: { name: string; version: string };
  protocolVersion: string;
  capabilities: {
    workspace: string;
    methods: string[];
    runConfigTypes: string[];
    proxyKinds: string[];
    maxMessageBytes: number;
  };
}

export interface Problem {
  path: string;
  message: string;
  line?: number;
}

export interface ErrorData {
  category: 'user' | 'config' | 'environment' | 'bug';
  problems?: Problem[];
}

export interface Interconnect {
  enabled: boolean;
  proxy?: string;
}

export interface RunConfig {
  name: string;
  type: string; // java | exec | docker | remoteDebug
  java?: { mainClass?: string; jar?: string; classpath?: string[]; vmArgs?: string[]; args?: string[] };
  exec?: { command: string[] };
  env?: Record<string, string>;
  cwd?: string;
  interconnect?: Interconnect;
}

export interface RunConfigListResult {
  configs: RunConfig[];
  revision: string;
  problems?: Problem[];
}

export interface Proxy {
  name: string;
  ssh?: { host: string; port?: number; user?: string };
  kubernetes?: { context?: string; namespace?: string };
}

export interface ProxyListResult {
  proxies: Proxy[];
  revision: string;
  problems?: Problem[];
}

export interface SaveResult {
  revision: string;
}

/** A tunnel's health; also the params of the interconnect/status notification. */
export interface TunnelStatus {
  sessionId?: string;
  proxy: string;
  state: 'connecting' | 'connected' | 'reconnecting' | 'closed' | string;
  since: string;
  error?: string;
}

export interface ExposedPort {
  localPort: number;
  address: string;
  registry?: string;
}

export interface LaunchPrepareResult {
  sessionId: string;
  vmArgs?: string[];
  env?: Record<string, string>;
  debugAddress?: string;
  exposed?: ExposedPort[];
}

export interface LaunchStateParams {
  launchId: string;
  state: 'starting' | 'connecting' | 'running' | 'debugReady' | 'exited' | 'failed' | string;
  debugAddress?: string;
  exitCode?: number;
  message?: string;
  exposed?: ExposedPort[];
}

export interface LaunchOutputParams {
  launchId: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface ConnectionRecord {
  sessionId: string;
  target: string;
  route: 'tunnel' | 'direct' | string;
  sent: number;
  received: number;
  durationMs: number;
  error?: string;
}

export interface LogMessageParams {
  type: 1 | 2 | 3 | 4;
  message: string;
}

export interface MessageActionItem {
  title: string;
}

export interface ShowMessageRequestParams {
  type: 1 | 2 | 3 | 4;
  message: string;
  actions?: MessageActionItem[];
}

export interface ShowInputRequestParams {
  message: string;
  secret: boolean;
}

export interface WorkDoneProgress {
  kind: 'begin' | 'report' | 'end';
  title?: string;
  message?: string;
  percentage?: number;
}

export const ErrorCodes = {
  RequestCancelled: -32800,
  NotFound: 1001,
  Conflict: 1002,
  WorkspaceInvalid: 1003,
  NotSupported: 1006,
  LaunchFailed: 2001,
} as const;
