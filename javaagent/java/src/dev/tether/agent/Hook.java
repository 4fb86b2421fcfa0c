package dev.tether.agent;

import java.io.IOException;
import java.net.ConnectException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The hooks behind the prologues the agent inserts into the JDK (called
 * through {@link Trampoline}, which java.base can see). A connect to a
 * destination outside the routes costs a few comparisons and no round trip.
 *
 * Connect prologue (sun.nio.ch.Net.connect; AbstractPlainSocketImpl.doConnect
 * uses legacyAddr, which also remembers the real destination of the impl):
 * <pre>
 *   addr = T.addr(addr, port);   // 127.0.0.1 (a private instance) when redirected
 *   port = T.port(addr, port);   // the one-shot loopback port when redirected
 * </pre>
 * DNS prologue (InetAddress.getAddressesFromNameService, JDK 8-17):
 * <pre>
 *   host = T.host(host);         // the fake address literal for route-domain names
 * </pre>
 * SocketImpl.getInetAddress/getPort prologues (JDK 8-17): the real
 * destination instead of the loopback forward the plain impl stored.
 */
public final class Hook {
    private Hook() {}

    static volatile Control control;
    static volatile Routes routes;

    /** The loopback address returned for redirected connects; compared by identity. */
    static final InetAddress LOOPBACK;
    static {
        InetAddress a = null;
        try {
            a = InetAddress.getByAddress("localhost", new byte[] {127, 0, 0, 1});
        } catch (UnknownHostException e) {
            // cannot happen for a 4-byte address
        }
        LOOPBACK = a;
    }

    private static final ThreadLocal<int[]> PENDING = new ThreadLocal<int[]>();

    /** name -> fake address literal, filled from the backend's answers. */
    static final ConcurrentHashMap<String, String> FAKE_BY_NAME = new ConcurrentHashMap<String, String>();

    public static InetAddress addr(InetAddress a, int port) throws IOException {
        Routes r = routes;
        Control c = control;
        if (r == null || c == null || a == null || !r.matches(a) || port <= 0) return a;
        if (calledForDatagram()) return a; // UDP connects are left alone
        int p = c.connect(a, port);
        int[] box = PENDING.get();
        if (box == null) {
            box = new int[1];
            PENDING.set(box);
        }
        box[0] = p;
        return LOOPBACK;
    }

    /** Redirected legacy SocketImpls (JDK 8-17 plain impl) -> {real address, real port}. */
    private static final java.util.Map<Object, Object[]> REAL =
            java.util.Collections.synchronizedMap(new java.util.WeakHashMap<Object, Object[]>());

    /** AbstractPlainSocketImpl.doConnect: like addr, remembering the real destination of impl. */
    public static InetAddress legacyAddr(Object impl, InetAddress a, int port) throws IOException {
        InetAddress r = addr(a, port);
        if (r == LOOPBACK) {
            REAL.put(impl, new Object[] {a, Integer.valueOf(port)});
            Log.debug("legacy SocketImpl connect to " + a + ":" + port + " redirected");
        }
        return r;
    }

    /**
     * SocketImpl.getInetAddress: the native connect of the plain impl stores
     * the address it connected to (our loopback) in the impl; give back the
     * real one (Socket.getInetAddress, SSLSocket host checks and SNI).
     */
    public static InetAddress realAddr(Object impl, InetAddress cur) {
        if (cur != LOOPBACK) return cur;
        Object[] v = REAL.get(impl);
        return v == null ? cur : (InetAddress) v[0];
    }

    /** SocketImpl.getPort: the real port of a redirected plain impl. */
    public static int realPort(Object impl, int cur) {
        if (REAL.isEmpty()) return cur;
        Object[] v = REAL.get(impl);
        return v == null ? cur : ((Integer) v[1]).intValue();
    }

    public static int port(InetAddress a, int port) {
        if (a != LOOPBACK) return port;
        int[] box = PENDING.get();
        if (box == null || box[0] == 0) return port;
        int p = box[0];
        box[0] = 0;
        return p;
    }

    /** Rewrites a route-domain host name to its fake address literal (JDK 8-17 DNS). */
    public static String host(String host) throws UnknownHostException {
        Routes r = routes;
        Control c = control;
        if (r == null || c == null || host == null || !r.matchesName(host)) return host;
        return resolve(host);
    }

    /** The fake address literal for a route-domain name, asking the backend once. */
    public static String resolve(String host) throws UnknownHostException {
        String key = Routes.normalize(host);
        String fake = FAKE_BY_NAME.get(key);
        if (fake != null) return fake;
        Control c = control;
        if (c == null) throw new UnknownHostException(host + ": tether agent is not connected");
        try {
            fake = c.resolve(key);
        } catch (IOException e) {
            UnknownHostException u = new UnknownHostException(host + ": " + e.getMessage());
            u.initCause(e);
            throw u;
        }
        FAKE_BY_NAME.put(key, fake);
        return fake;
    }

    /** Whether name is under one of the route domains (for the resolver provider). */
    public static boolean routed(String name) {
        Routes r = routes;
        return r != null && control != null && r.matchesName(name);
    }

    /** The name a fake address stands for, or null. */
    public static String nameOf(byte[] addr) {
        Routes r = routes;
        if (r == null || addr.length != 4 || !r.isFake(addr)) return null;
        String lit = (addr[0] & 0xff) + "." + (addr[1] & 0xff) + "." + (addr[2] & 0xff) + "." + (addr[3] & 0xff);
        for (java.util.Map.Entry<String, String> e : FAKE_BY_NAME.entrySet()) {
            if (e.getValue().equals(lit)) return e.getKey();
        }
        return null;
    }

    /** Parses a dotted IPv4 literal into an address carrying host as its name. */
    public static InetAddress fakeAddress(String host, String literal) throws UnknownHostException {
        String[] p = literal.split("\\.");
        if (p.length != 4) throw new UnknownHostException(host + ": bad answer " + literal);
        byte[] b = new byte[4];
        for (int i = 0; i < 4; i++) b[i] = (byte) Integer.parseInt(p[i]);
        return InetAddress.getByAddress(host, b);
    }

    private static boolean calledForDatagram() {
        StackTraceElement[] st = new Throwable().getStackTrace();
        for (int i = 0; i < st.length && i < 12; i++) {
            String cn = st[i].getClassName();
            if (cn.startsWith("sun.nio.ch.Datagram") || cn.startsWith("java.net.Datagram")
                    || cn.contains("DatagramSocket")) return true;
        }
        return false;
    }

    static ConnectException refused(String msg) {
        return new ConnectException(msg);
    }

    static boolean isV4(InetAddress a) { return a instanceof Inet4Address; }
}
