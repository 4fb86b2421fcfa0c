import dev.tether.agent.Patcher;
import java.net.URI;
import java.nio.file.FileSystem;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Patcher test against the running JDK's own class files (read from jrt:/):
 * patches the connect/DNS targets with the agent's prologues and, as a
 * stress test, every method with code of a set of java.base classes, then
 * checks the results structurally (re-parse, method list unchanged). The
 * real verification happens when the JVM loads the patched classes with
 * -XX:+BytecodeVerificationLocal (see the Go tests).
 * Args: none. Prints "OK n" or throws.
 */
public class PatchJDK {
    static final Patcher.Op[] CONNECT = {
        Patcher.Op.aload(2), Patcher.Op.iload(3),
        Patcher.Op.call("dev/tether/agent/Hook", "addr", "(Ljava/net/InetAddress;I)Ljava/net/InetAddress;"),
        Patcher.Op.astore(2),
        Patcher.Op.aload(2), Patcher.Op.iload(3),
        Patcher.Op.call("dev/tether/agent/Hook", "port", "(Ljava/net/InetAddress;I)I"),
        Patcher.Op.istore(3),
    };

    public static void main(String[] args) throws Exception {
        FileSystem jrt = FileSystems.getFileSystem(URI.create("jrt:/"));
        Path base = jrt.getPath("/modules/java.base");
        byte[] net = Files.readAllBytes(base.resolve("sun/nio/ch/Net.class"));
        byte[] p = Patcher.patch(net, "connect", "(Ljava/net/ProtocolFamily;Ljava/io/FileDescriptor;Ljava/net/InetAddress;I)I", CONNECT);
        if (!Patcher.methods(p).equals(Patcher.methods(net))) throw new AssertionError("methods changed");
        System.out.println("Net.connect: " + net.length + " -> " + p.length + " bytes");
        byte[] ia = Files.readAllBytes(base.resolve("java/net/InetAddress.class"));
        String desc = Patcher.hasMethod(ia, "getAddressesFromNameService", "(Ljava/lang/String;Ljava/net/InetAddress;)[Ljava/net/InetAddress;")
                ? "(Ljava/lang/String;Ljava/net/InetAddress;)[Ljava/net/InetAddress;" : "(Ljava/lang/String;)[Ljava/net/InetAddress;";
        Patcher.patch(ia, "getAddressesFromNameService", desc, Patcher.Op.aload(0),
                Patcher.Op.call("dev/tether/agent/Hook", "host", "(Ljava/lang/String;)Ljava/lang/String;"), Patcher.Op.astore(0));
        System.out.println("InetAddress.getAddressesFromNameService" + desc + ": ok");
        Path plain = base.resolve("java/net/AbstractPlainSocketImpl.class");
        if (Files.exists(plain)) {
            Patcher.patch(Files.readAllBytes(plain), "doConnect", "(Ljava/net/InetAddress;II)V",
                    Patcher.Op.aload(1), Patcher.Op.iload(2),
                    Patcher.Op.call("dev/tether/agent/Hook", "addr", "(Ljava/net/InetAddress;I)Ljava/net/InetAddress;"),
                    Patcher.Op.astore(1), Patcher.Op.aload(1), Patcher.Op.iload(2),
                    Patcher.Op.call("dev/tether/agent/Hook", "port", "(Ljava/net/InetAddress;I)I"), Patcher.Op.istore(2));
            System.out.println("AbstractPlainSocketImpl.doConnect: ok");
        } else {
            System.out.println("AbstractPlainSocketImpl: not in this JDK");
        }
        // Stress: every method with code in these packages gets a no-op prologue
        // (a static call with no arguments) and must re-parse.
        int n = 0;
        for (String pkg : new String[] {"sun/nio/ch", "java/net", "java/util"}) {
            try (java.util.stream.Stream<Path> s = Files.list(base.resolve(pkg))) {
                for (Path f : (Iterable<Path>) s::iterator) {
                    if (!f.toString().endsWith(".class")) continue;
                    byte[] c = Files.readAllBytes(f);
                    List<String> ms = Patcher.methods(c);
                    for (String m : ms) {
                        String[] nd = m.split(" ");
                        try {
                            byte[] out = Patcher.patch(c, nd[0], nd[1], Patcher.Op.call("T", "t", "()V"));
                            if (!Patcher.methods(out).equals(ms)) throw new AssertionError(f + " " + m);
                            n++;
                        } catch (Patcher.PatchException e) {
                            if (!e.getMessage().contains("native or abstract") && !e.getMessage().contains("no code")) throw new AssertionError(f + " " + m + ": " + e.getMessage());
                        }
                    }
                }
            }
        }
        System.out.println("OK " + n + " methods patched");
    }
}
