package dev.tether.agent;

/** One-line messages on stderr, prefixed so that users can tell them apart. */
final class Log {
    static volatile boolean debug;

    private Log() {}

    static void info(String msg) { System.err.println("tether-agent: " + msg); }

    static void debug(String msg) { if (debug) info(msg); }
}
