// How a `java` launch configuration (vscode-java-debug's contract:
// mainClass, classPaths, vmArgs as a string or an array, env) is matched to
// a Tether run configuration and given what launch/prepare returned. No
// vscode import: the node --test layer checks these functions directly.

import { LaunchPrepareResult, RunConfig } from './protocol';

/** The fields of vscode-java-debug's launch configuration that we read or change. */
export interface JavaLaunchConfig {
  type: string;
  request: string;
  name?: string;
  mainClass?: string;
  vmArgs?: string | string[];
  env?: Record<string, string>;
  /** Tether's own: the run configuration whose interconnect to use; "" or false turns Tether off. */
  tetherConfig?: string | false;
  /** Set by the extension: the prepared session to release when the debug session ends. */
  tetherSessionId?: string;
  [key: string]: unknown;
}

/**
 * The run configuration to use for a java launch: the one named by
 * tetherConfig, else the only java configuration with interconnect on whose
 * mainClass equals the launch's (vscode-java-debug may write it as
 * "module/class"). Undefined: leave the launch alone.
 */
export function matchRunConfig(launch: JavaLaunchConfig, configs: RunConfig[]): RunConfig | undefined {
  if (launch.tetherConfig === false || launch.tetherConfig === '') {
    return undefined;
  }
  if (typeof launch.tetherConfig === 'string') {
    const rc = configs.find((c) => c.name === launch.tetherConfig);
    if (!rc) {
      throw new Error(`tetherConfig: no run configuration named "${launch.tetherConfig}" in tether.yaml`);
    }
    return rc;
  }
  const main = (launch.mainClass ?? '').replace(/^.*\//, '');
  if (!main) {
    return undefined;
  }
  const found = configs.filter((c) => c.type === 'java' && c.interconnect?.enabled && c.java?.mainClass === main);
  return found.length === 1 ? found[0] : undefined;
}

/** Quotes a JVM argument for vscode-java-debug's vmArgs string (split on blanks, "…" groups). */
export function quoteArg(a: string): string {
  return /[\s"]/.test(a) ? '"' + a.replace(/"/g, '\\"') + '"' : a;
}

/**
 * Returns the launch with prep applied: prep.vmArgs go before the user's
 * (a string stays a string, an array stays an array), prep.env is added to
 * the user's env (Tether's values win: the agent needs its own), and the
 * session id is remembered for launch/release.
 */
export function applyPrepared(launch: JavaLaunchConfig, prep: LaunchPrepareResult): JavaLaunchConfig {
  const out: JavaLaunchConfig = { ...launch, tetherSessionId: prep.sessionId };
  const add = prep.vmArgs ?? [];
  if (add.length > 0) {
    if (Array.isArray(launch.vmArgs)) {
      out.vmArgs = [...add, ...launch.vmArgs];
    } else {
      const own = (launch.vmArgs ?? '').trim();
      out.vmArgs = [...add.map(quoteArg), ...(own ? [own] : [])].join(' ');
    }
  }
  if (prep.env && Object.keys(prep.env).length > 0) {
    out.env = { ...(launch.env ?? {}), ...prep.env };
  }
  return out;
}
