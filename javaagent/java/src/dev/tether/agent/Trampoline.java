package dev.tether.agent;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.function.ToIntBiFunction;

/**
 * What the patched JDK methods call. On JDK 9+ this class is renamed to
 * {@code java.net.TetherTrampoline} and defined inside java.base (with
 * Lookup.defineClass), so java.base can call it without the boot class
 * path being appended (which would print a CDS warning on every launch and
 * turn class sharing off for application classes). On JDK 8, or if that
 * fails, it is loaded from the boot class path under its own name.
 *
 * It holds no logic and refers to none of the agent's classes: the agent
 * installs the hooks as JDK functional objects. Unset hooks are no-ops.
 * No lambdas, no inner classes (the class is renamed byte-wise).
 */
public final class Trampoline {
    private Trampoline() {}

    /** (addr, port) -> addr to connect to; throws UncheckedIOException to fail the connect. */
    public static volatile BiFunction<InetAddress, Integer, InetAddress> addrHook;
    /** (addr after addrHook, port) -> port to connect to. */
    public static volatile ToIntBiFunction<InetAddress, Integer> portHook;
    /** {impl, addr, port} -> addr (legacy SocketImpl). */
    public static volatile Function<Object[], InetAddress> legacyAddrHook;
    /** (impl, address field) -> address to report. */
    public static volatile BiFunction<Object, InetAddress, InetAddress> realAddrHook;
    /** (impl, port field) -> port to report. */
    public static volatile ToIntBiFunction<Object, Integer> realPortHook;
    /** host -> host to resolve (a fake address literal for route-domain names). */
    public static volatile Function<String, String> hostHook;

    public static InetAddress addr(InetAddress a, int port) throws IOException {
        BiFunction<InetAddress, Integer, InetAddress> f = addrHook;
        if (f == null) return a;
        try {
            return f.apply(a, Integer.valueOf(port));
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
    }

    public static int port(InetAddress a, int port) {
        ToIntBiFunction<InetAddress, Integer> f = portHook;
        return f == null ? port : f.applyAsInt(a, Integer.valueOf(port));
    }

    public static InetAddress legacyAddr(Object impl, InetAddress a, int port) throws IOException {
        Function<Object[], InetAddress> f = legacyAddrHook;
        if (f == null) return a;
        try {
            return f.apply(new Object[] {impl, a, Integer.valueOf(port)});
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
    }

    public static InetAddress realAddr(Object impl, InetAddress cur) {
        BiFunction<Object, InetAddress, InetAddress> f = realAddrHook;
        return f == null ? cur : f.apply(impl, cur);
    }

    public static int realPort(Object impl, int cur) {
        ToIntBiFunction<Object, Integer> f = realPortHook;
        return f == null ? cur : f.applyAsInt(impl, Integer.valueOf(cur));
    }

    public static String host(String host) throws IOException {
        Function<String, String> f = hostHook;
        if (f == null) return host;
        try {
            return f.apply(host);
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
    }
}
