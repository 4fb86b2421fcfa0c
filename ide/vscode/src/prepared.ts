// Prepared sessions of java debug launches: launch/prepare was answered and
// its result handed to VS Code in a launch configuration. Each is released
// when its debug session ends, or, when no debug session starts with it in
// time (the Java debugger failed after our provider ran, so VS Code never
// ends a session for it), after a timeout. No vscode import: the node --test
// layer drives it directly.

/**
 * How long a prepared session waits for its debug session. Generous:
 * vscode-java-debug may build the project after our provider ran.
 */
export const CLAIM_TIMEOUT_MS = 2 * 60 * 1000;

/** Releases a session (launch/release); why says what for the log. */
export type Release = (sessionId: string, why: string) => Promise<void>;

interface Prepared {
  /** When launch/prepare's result was handed out (ms since the epoch). */
  preparedAt: number;
  /** Set until a debug session claims it. */
  timer?: ReturnType<typeof setTimeout>;
}

export class PreparedSessions {
  private readonly sessions = new Map<string, Prepared>();

  constructor(
    private readonly release: Release,
    readonly claimTimeoutMs: number = CLAIM_TIMEOUT_MS,
  ) {}

  /** The ids not released yet. */
  ids(): string[] {
    return [...this.sessions.keys()];
  }

  /** Whether id was handed out and is not claimed yet. */
  unclaimed(id: string): boolean {
    return this.sessions.get(id)?.timer !== undefined;
  }

  /** launch/prepare's result for id was handed out: it waits for its debug session. */
  add(id: string): void {
    this.stopTimer(this.sessions.get(id));
    const p: Prepared = { preparedAt: Date.now() };
    p.timer = setTimeout(() => {
      if (this.sessions.get(id) !== p) {
        return;
      }
      this.sessions.delete(id);
      const waited = Math.round((Date.now() - p.preparedAt) / 1000);
      // The release logs its own failures; nothing here waits for it.
      this.release(id, `no debug session started with it within ${waited} s`).catch(() => undefined);
    }, this.claimTimeoutMs);
    // A pending release must not keep a process (the tests) alive.
    p.timer.unref?.();
    this.sessions.set(id, p);
  }

  /**
   * A debug session with id started: id is released when that session
   * ends. False: id is not waiting (unknown, already claimed or released).
   */
  claim(id: string): boolean {
    const p = this.sessions.get(id);
    if (!p?.timer) {
      return false;
    }
    this.stopTimer(p);
    return true;
  }

  /** The debug session of id ended: releases id. False: id was not ours or is released already. */
  async end(id: string, why: string): Promise<boolean> {
    const p = this.sessions.get(id);
    if (!p) {
      return false;
    }
    this.stopTimer(p);
    this.sessions.delete(id);
    await this.release(id, why);
    return true;
  }

  /** Releases every session not released yet (the extension is deactivated). */
  async releaseAll(why: string): Promise<void> {
    await Promise.all(this.ids().map((id) => this.end(id, why)));
  }

  /** Forgets every session without releasing it: the backend that held them is gone. */
  clear(): void {
    for (const p of this.sessions.values()) {
      this.stopTimer(p);
    }
    this.sessions.clear();
  }

  private stopTimer(p: Prepared | undefined): void {
    if (p?.timer !== undefined) {
      clearTimeout(p.timer);
      p.timer = undefined;
    }
  }
}
