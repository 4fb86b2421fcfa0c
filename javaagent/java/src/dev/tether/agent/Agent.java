package dev.tether.agent;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.instrument.ClassFileTransformer;
import java.net.InetAddress;
import java.lang.instrument.Instrumentation;
import java.security.ProtectionDomain;
import java.util.ArrayList;
import java.util.List;

/**
 * The agent proper, loaded from the boot class path by {@link Premain}.
 * Reads the control address and token (environment, or system properties
 * tether.agent.control / tether.agent.token), fetches the routes, then
 * installs the transformer and retransforms the already-loaded targets.
 */
public final class Agent {
    private Agent() {}

    /** Internal name of the trampoline the prologues call (java/net/TetherTrampoline on JDK 9+). */
    static volatile String HOOK = "dev/tether/agent/Trampoline";
    static final String NET = "sun/nio/ch/Net";
    static final String NET_CONNECT = "(Ljava/net/ProtocolFamily;Ljava/io/FileDescriptor;Ljava/net/InetAddress;I)I";
    static final String PLAIN = "java/net/AbstractPlainSocketImpl";
    static final String PLAIN_CONNECT = "(Ljava/net/InetAddress;II)V";
    static final String SOCKETIMPL = "java/net/SocketImpl";
    static final String INETADDR = "java/net/InetAddress";
    static final String NS_LOOKUP = "(Ljava/lang/String;Ljava/net/InetAddress;)[Ljava/net/InetAddress;";
    static final String NS_LOOKUP18 = "(Ljava/lang/String;)[Ljava/net/InetAddress;";


    public static void start(String args, Instrumentation inst, Class<?> trampoline) {
        try {
            HOOK = trampoline.getName().replace('.', '/');
            Log.debug = "1".equals(setting("TETHER_AGENT_DEBUG", "tether.agent.debug"));
            String addr = setting("TETHER_AGENT_CONTROL", "tether.agent.control");
            String token = setting("TETHER_AGENT_TOKEN", "tether.agent.token");
            if (addr == null || addr.isEmpty() || token == null || token.isEmpty()) {
                Log.info("disabled: TETHER_AGENT_CONTROL/TETHER_AGENT_TOKEN not set");
                return;
            }
            long t0 = System.nanoTime();
            Routes routes = new Routes();
            Control control = Control.open(addr, token, routes);
            // Load what the hooks and the transformer use before any class is transformed.
            Patcher.stackEffect("(I)I");
            Hook.routes = routes;
            Hook.control = control;
            installHooks(trampoline);
            int feature = javaFeature();
            boolean forcePatch = "1".equals(setting("TETHER_AGENT_DNS_PATCH", "tether.agent.dnsPatch"));
            boolean dnsPatch = feature < 18 || !hasProvider() || forcePatch;
            String dns = dnsPatch ? "prologue" : "resolver provider";
            if (dnsPatch && !forcePatch && feature >= 9 && feature <= 17 && trampoline.getName().startsWith("java.net.")) {
                // A name service in front of the JDK's: names keep their host name.
                try {
                    Class<?> shim = Premain.installNameService(inst);
                    installNameServiceHooks(shim);
                    dnsPatch = false;
                    dns = "name service";
                } catch (Throwable t) {
                    Log.info("name service not installed (" + t + "); using the DNS prologue");
                }
            }
            // Load the targets now, patch them with one retransform, and remove
            // the transformer: a registered ClassFileTransformer makes every
            // later class load (CDS ones included) go through the JVMTI hook,
            // which cost ~0.5 s of startup in a small program here.
            List<String> names = new ArrayList<String>();
            names.add(NET);
            if (feature <= 17) {
                names.add(PLAIN);
                names.add(SOCKETIMPL);
            }
            if (dnsPatch) names.add(INETADDR);
            List<Class<?>> targets = new ArrayList<Class<?>>();
            for (String n : names) {
                try {
                    targets.add(Class.forName(n.replace('/', '.'), false, null));
                } catch (ClassNotFoundException e) {
                    Log.debug(n.replace('/', '.') + " not in this JDK");
                }
            }
            Transformer tr = new Transformer(dnsPatch, feature <= 17);
            inst.addTransformer(tr, true);
            try {
                inst.retransformClasses(targets.toArray(new Class<?>[0]));
            } finally {
                inst.removeTransformer(tr);
            }
            if (tr.patched == 0) throw new IllegalStateException("no JDK connect method could be patched");
            NettyCheck.start(inst);
            Log.debug("on: " + routes.size() + " routes, control " + addr + ", JDK " + feature + ", hooks in " + trampoline.getName() + ", dns "
                    + dns + ", " + (System.nanoTime() - t0) / 1000000 + " ms");
        } catch (Throwable t) {
            Hook.control = null;
            Hook.routes = null;
            try {
                trampoline.getField("addrHook").set(null, null);
                trampoline.getField("hostHook").set(null, null);
            } catch (Throwable ignored) {
                // best effort: the hooks see no routes and do nothing anyway
            }
            Log.info("disabled: " + t);
        }
    }

    /** Points the trampoline's hook fields at Hook (JDK functional types: the trampoline may live in java.base). */
    static void installHooks(Class<?> t) throws Exception {
        t.getField("portHook").set(null, new java.util.function.ToIntBiFunction<InetAddress, Integer>() {
            public int applyAsInt(InetAddress a, Integer port) { return Hook.port(a, port.intValue()); }
        });
        t.getField("realAddrHook").set(null, new java.util.function.BiFunction<Object, InetAddress, InetAddress>() {
            public InetAddress apply(Object impl, InetAddress cur) { return Hook.realAddr(impl, cur); }
        });
        t.getField("realPortHook").set(null, new java.util.function.ToIntBiFunction<Object, Integer>() {
            public int applyAsInt(Object impl, Integer cur) { return Hook.realPort(impl, cur.intValue()); }
        });
        t.getField("legacyAddrHook").set(null, new java.util.function.Function<Object[], InetAddress>() {
            public InetAddress apply(Object[] v) {
                try {
                    return Hook.legacyAddr(v[0], (InetAddress) v[1], ((Integer) v[2]).intValue());
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }
        });
        t.getField("hostHook").set(null, new java.util.function.Function<String, String>() {
            public String apply(String host) {
                try {
                    return Hook.host(host);
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }
        });
        // Last: connects are redirected from here on.
        t.getField("addrHook").set(null, new java.util.function.BiFunction<InetAddress, Integer, InetAddress>() {
            public InetAddress apply(InetAddress a, Integer port) {
                try {
                    return Hook.addr(a, port.intValue());
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }
        });
    }

    static void installNameServiceHooks(Class<?> shim) throws Exception {
        shim.getField("reverseHook").set(null, new java.util.function.Function<byte[], String>() {
            public String apply(byte[] addr) { return Hook.nameOf(addr); }
        });
        shim.getField("resolveHook").set(null, new java.util.function.Function<String, byte[]>() {
            public byte[] apply(String host) {
                if (!Hook.routed(host)) return null;
                try {
                    return Hook.fakeAddress(host, Hook.resolve(host)).getAddress();
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            }
        });
    }

    /** Whether the jar carries the JDK 18+ resolver provider (built with a JDK >= 18). */
    static boolean hasProvider() {
        return ClassLoader.getSystemResource("dev/tether/agent/jdk18/ResolverProvider.class") != null;
    }

    static String setting(String env, String prop) {
        String v = System.getProperty(prop);
        return v != null ? v : System.getenv(env);
    }

    static int javaFeature() {
        String v = System.getProperty("java.specification.version", "1.8");
        if (v.startsWith("1.")) v = v.substring(2);
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException e) {
            return 8;
        }
    }

    static final class Transformer implements ClassFileTransformer {
        private final boolean dnsPatch, legacy;
        volatile int patched;

        Transformer(boolean dnsPatch, boolean legacy) { this.dnsPatch = dnsPatch; this.legacy = legacy; }

        public byte[] transform(ClassLoader loader, String name, Class<?> redefined, ProtectionDomain pd, byte[] cls) {
            if (name == null) return null;
            try {
                if (loader == null) {
                    if (name.equals(NET)) {
                        byte[] b = Patcher.patch(cls, "connect", NET_CONNECT, connectPrologue(2, 3));
                        patched++;
                        return b;
                    }
                    if (name.equals(PLAIN)) {
                        return Patcher.patch(cls, "doConnect", PLAIN_CONNECT,
                                Patcher.Op.aload(0), Patcher.Op.aload(1), Patcher.Op.iload(2),
                                Patcher.Op.call(HOOK, "legacyAddr", "(Ljava/lang/Object;Ljava/net/InetAddress;I)Ljava/net/InetAddress;"),
                                Patcher.Op.astore(1),
                                Patcher.Op.aload(1), Patcher.Op.iload(2),
                                Patcher.Op.call(HOOK, "port", "(Ljava/net/InetAddress;I)I"),
                                Patcher.Op.istore(2));
                    }
                    if (legacy && name.equals(SOCKETIMPL)) {
                        // Straight-line field fix-ups: this.address = Hook.realAddr(this, this.address), same for port.
                        byte[] b = Patcher.patch(cls, "getInetAddress", "()Ljava/net/InetAddress;",
                                Patcher.Op.aload(0), Patcher.Op.aload(0), Patcher.Op.aload(0),
                                Patcher.Op.getfield(SOCKETIMPL, "address", "Ljava/net/InetAddress;"),
                                Patcher.Op.call(HOOK, "realAddr", "(Ljava/lang/Object;Ljava/net/InetAddress;)Ljava/net/InetAddress;"),
                                Patcher.Op.putfield(SOCKETIMPL, "address", "Ljava/net/InetAddress;"));
                        return Patcher.patch(b, "getPort", "()I",
                                Patcher.Op.aload(0), Patcher.Op.aload(0), Patcher.Op.aload(0),
                                Patcher.Op.getfield(SOCKETIMPL, "port", "I"),
                                Patcher.Op.call(HOOK, "realPort", "(Ljava/lang/Object;I)I"),
                                Patcher.Op.putfield(SOCKETIMPL, "port", "I"));
                    }
                    if (dnsPatch && name.equals(INETADDR)) {
                        String desc = Patcher.hasMethod(cls, "getAddressesFromNameService", NS_LOOKUP) ? NS_LOOKUP : NS_LOOKUP18;
                        return Patcher.patch(cls, "getAddressesFromNameService", desc,
                                Patcher.Op.aload(0),
                                Patcher.Op.call(HOOK, "host", "(Ljava/lang/String;)Ljava/lang/String;"),
                                Patcher.Op.astore(0));
                    }
                    return null;
                }
            } catch (Throwable t) {
                Log.info("could not patch " + name.replace('/', '.') + ": " + t + " (connects through it are not redirected)");
            }
            return null;
        }

        private static Patcher.Op[] connectPrologue(int addr, int port) {
            return new Patcher.Op[] {
                Patcher.Op.aload(addr), Patcher.Op.iload(port),
                Patcher.Op.call(HOOK, "addr", "(Ljava/net/InetAddress;I)Ljava/net/InetAddress;"),
                Patcher.Op.astore(addr),
                Patcher.Op.aload(addr), Patcher.Op.iload(port),
                Patcher.Op.call(HOOK, "port", "(Ljava/net/InetAddress;I)I"),
                Patcher.Op.istore(port),
            };
        }

    }

    /**
     * Netty's native transports (epoll, kqueue, io_uring) connect in native
     * code and its DnsNameResolver queries DNS itself: both bypass the
     * agent. Checked from the loaded classes a second after start, then at
     * 10 s, 60 s and at exit (a transformer would slow every class load).
     */
    static final class NettyCheck implements Runnable {
        private final Instrumentation inst;
        private volatile boolean nativeReported, dnsReported;

        private NettyCheck(Instrumentation inst) { this.inst = inst; }

        static void start(Instrumentation inst) {
            NettyCheck c = new NettyCheck(inst);
            Thread t = new Thread(c, "tether-agent-netty-check");
            t.setDaemon(true);
            t.start();
            try {
                Runtime.getRuntime().addShutdownHook(new Thread(new Runnable() {
                    public void run() { c.check(); }
                }, "tether-agent-netty-check-exit"));
            } catch (IllegalStateException e) {
                // already shutting down
            }
        }

        public void run() {
            long[] at = {1000, 9000, 50000};
            for (long ms : at) {
                try {
                    Thread.sleep(ms);
                } catch (InterruptedException e) {
                    return;
                }
                check();
                if (nativeReported && dnsReported) return;
            }
        }

        void check() {
            for (Class<?> c : inst.getAllLoadedClasses()) {
                String n = c.getName();
                if (!n.startsWith("io.netty.")) continue;
                if (!nativeReported && (n.startsWith("io.netty.channel.epoll.") || n.startsWith("io.netty.channel.kqueue.")
                        || n.startsWith("io.netty.incubator.channel.uring.") || n.startsWith("io.netty.channel.uring."))) {
                    nativeReported = true;
                    report("Netty native transport in use (" + n + "): its connects bypass the agent;"
                            + " run with -Dio.netty.transport.noNative=true to use the NIO transport");
                }
                if (!dnsReported && n.equals("io.netty.resolver.dns.DnsNameResolver")) {
                    dnsReported = true;
                    report("Netty DnsNameResolver in use: it queries DNS servers itself and bypasses the agent for private names;"
                            + " use Netty's DefaultAddressResolverGroup (the JDK resolver) for cloud names");
                }
            }
        }

        private static void report(String msg) {
            Log.info(msg);
            Control c = Hook.control;
            if (c != null) c.log(msg);
        }
    }
}
