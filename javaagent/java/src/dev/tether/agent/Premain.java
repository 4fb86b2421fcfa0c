package dev.tether.agent;

import java.io.File;
import java.lang.instrument.Instrumentation;
import java.util.jar.JarFile;

/**
 * Entry point, loaded by the application class loader. The patched JDK
 * methods call {@link Trampoline}, which java.base must see: on JDK 9+ it
 * is defined inside java.base as java.net.TetherTrampoline and the agent
 * stays in the application class loader; on JDK 8 (or if that fails, or
 * with -Dtether.agent.bootAppend) the jar is appended to the boot class
 * path and the agent runs from there. It must never stop the JVM from
 * starting: any failure is one line on stderr and the agent stays off.
 */
public final class Premain {
    private Premain() {}

    public static void premain(String args, Instrumentation inst) {
        start(args, inst);
    }

    public static void agentmain(String args, Instrumentation inst) {
        start(args, inst);
    }

    private static boolean isEmpty(String env, String prop) {
        String v = System.getProperty(prop);
        if (v == null) v = System.getenv(env);
        return v == null || v.isEmpty();
    }

    private static void start(String args, Instrumentation inst) {
        try {
            if (isEmpty("TETHER_AGENT_CONTROL", "tether.agent.control") || isEmpty("TETHER_AGENT_TOKEN", "tether.agent.token")) {
                // Nothing to do: do not touch the JDK at all.
                System.err.println("tether-agent: disabled: TETHER_AGENT_CONTROL/TETHER_AGENT_TOKEN not set");
                return;
            }
            Class<?> tramp = null;
            String why = null;
            if (feature() >= 9 && System.getProperty("tether.agent.bootAppend") == null) {
                try {
                    tramp = defineInJavaBase(inst);
                } catch (Throwable t) {
                    Throwable c = t instanceof java.lang.reflect.InvocationTargetException && t.getCause() != null ? t.getCause() : t;
                    why = c.toString();
                }
            }
            Class<?> agent;
            if (tramp != null) {
                agent = Class.forName("dev.tether.agent.Agent");
            } else {
                // JDK 8 (or java.base refused the class): the jar on the boot class path.
                File jar = new File(Premain.class.getProtectionDomain().getCodeSource().getLocation().toURI());
                inst.appendToBootstrapClassLoaderSearch(new JarFile(jar));
                tramp = Class.forName("dev.tether.agent.Trampoline", true, null);
                agent = Class.forName("dev.tether.agent.Agent", true, null);
                if (why != null) System.err.println("tether-agent: hooks on the boot class path (" + why + ")");
            }
            agent.getMethod("start", String.class, Instrumentation.class, Class.class).invoke(null, args, inst, tramp);
        } catch (Throwable t) {
            Throwable c = t instanceof java.lang.reflect.InvocationTargetException && t.getCause() != null ? t.getCause() : t;
            System.err.println("tether-agent: disabled: " + c);
        }
    }

    /** JDK 9+: Trampoline renamed to java.net.TetherTrampoline, defined in java.base. */
    private static Class<?> defineInJavaBase(Instrumentation inst) throws Exception {
        byte[] b = readOwn("Trampoline.class");
        b = Patcher.renameClass(b, "dev/tether/agent/Trampoline", "java/net/TetherTrampoline");
        try {
            // Already there (a second agent instance in this JVM)?
            return Class.forName("java.net.TetherTrampoline", false, null);
        } catch (ClassNotFoundException e) {
            // define it
        }
        Class<?> d = Class.forName("dev.tether.agent.jdk9.Define");
        return (Class<?>) d.getMethod("inJavaNet", Instrumentation.class, byte[].class).invoke(null, inst, b);
    }

    /**
     * JDK 9-17: NameServiceShim renamed to java.net.TetherNameService
     * (implementing InetAddress.NameService), defined in java.base and
     * installed in front of the JDK's name service. Returns the class.
     */
    static Class<?> installNameService(Instrumentation inst) throws Exception {
        Class<?> shim;
        try {
            shim = Class.forName("java.net.TetherNameService", false, null);
        } catch (ClassNotFoundException e) {
            byte[] b = readOwn("NameServiceShim.class");
            b = Patcher.renameClass(b, "dev/tether/agent/NameServiceShim", "java/net/TetherNameService");
            b = Patcher.renameClass(b, "dev/tether/agent/NsIface", "java/net/InetAddress$NameService");
            Class<?> d = Class.forName("dev.tether.agent.jdk9.Define");
            shim = (Class<?>) d.getMethod("inJavaNet", Instrumentation.class, byte[].class).invoke(null, inst, b);
        }
        java.lang.reflect.Field f = java.net.InetAddress.class.getDeclaredField("nameService");
        f.setAccessible(true); // java.net is open to this module (Define)
        Object cur = f.get(null);
        if (cur == null) throw new IllegalStateException("InetAddress.nameService is null");
        if (!shim.isInstance(cur)) f.set(null, shim.getConstructor(Object.class).newInstance(cur));
        return shim;
    }

    private static byte[] readOwn(String name) throws java.io.IOException {
        java.io.InputStream in = Premain.class.getResourceAsStream(name);
        if (in == null) throw new java.io.FileNotFoundException(name + " missing from the agent jar");
        try {
            java.io.ByteArrayOutputStream bo = new java.io.ByteArrayOutputStream();
            byte[] buf = new byte[4096];
            for (int n; (n = in.read(buf)) > 0;) bo.write(buf, 0, n);
            return bo.toByteArray();
        } finally {
            in.close();
        }
    }

    static int feature() {
        String v = System.getProperty("java.specification.version", "1.8");
        if (v.startsWith("1.")) v = v.substring(2);
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException e) {
            return 8;
        }
    }
}
