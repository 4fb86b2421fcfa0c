package dev.tether.agent;

import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.function.Function;

/**
 * JDK 9-17 name service in front of the JDK's own: defined in java.base as
 * java.net.TetherNameService (implementing InetAddress.NameService, see
 * NsIface) and installed in InetAddress.nameService. Route-domain names get
 * their fake address with the name kept (InetAddress.getByAddress(host,
 * bytes)); everything else goes to the JDK's name service. No lambdas, no
 * inner classes, no references to the agent (the class is renamed).
 */
public final class NameServiceShim implements NsIface {
    /** host -> fake address bytes, or null for "not ours". UncheckedIOException(UnknownHostException) to fail. */
    public static volatile Function<String, byte[]> resolveHook;
    /** address -> name for fake addresses, or null. */
    public static volatile Function<byte[], String> reverseHook;

    private final NsIface next;

    public NameServiceShim(Object next) {
        this.next = (NsIface) next;
    }

    public InetAddress[] lookupAllHostAddr(String host) throws UnknownHostException {
        Function<String, byte[]> f = resolveHook;
        if (f != null) {
            byte[] b;
            try {
                b = f.apply(host);
            } catch (UncheckedIOException e) {
                if (e.getCause() instanceof UnknownHostException) throw (UnknownHostException) e.getCause();
                UnknownHostException u = new UnknownHostException(host + ": " + e.getCause());
                u.initCause(e.getCause());
                throw u;
            }
            if (b != null) return new InetAddress[] {InetAddress.getByAddress(host, b)};
        }
        return next.lookupAllHostAddr(host);
    }

    public String getHostByAddr(byte[] addr) throws UnknownHostException {
        Function<byte[], String> f = reverseHook;
        String n = f == null ? null : f.apply(addr);
        return n != null ? n : next.getHostByAddr(addr);
    }
}
