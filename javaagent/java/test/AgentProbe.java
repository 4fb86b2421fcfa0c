import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketAddress;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.AsynchronousSocketChannel;
import java.nio.channels.DatagramChannel;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.channels.UnresolvedAddressException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

/**
 * Exercises every connect path the agent covers and prints "OK <case> ..."
 * or "FAIL <case> ...". Args: httpHostPort echoHostPort echoName localEchoHostPort [httpName]
 * (echoName resolves to the echo service's address in the cloud).
 * Java 11+ (HttpClient); virtual threads are used when present (21+).
 */
public class AgentProbe {
    static String http, echo, echoName, local, httpName;
    static int failures;

    interface Case { String run() throws Exception; }

    static void check(String name, Case c) {
        long t0 = System.nanoTime();
        try {
            String r = c.run();
            System.out.println("OK " + name + " " + r + " (" + (System.nanoTime() - t0) / 1000000 + " ms)");
        } catch (Throwable t) {
            failures++;
            System.out.println("FAIL " + name + " " + t);
        }
    }

    static InetSocketAddress isa(String hp) {
        int i = hp.lastIndexOf(':');
        return new InetSocketAddress(hp.substring(0, i), Integer.parseInt(hp.substring(i + 1)));
    }

    static String echoOver(InputStream in, OutputStream out) throws Exception {
        out.write("ping\n".getBytes(StandardCharsets.UTF_8));
        out.flush();
        return new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8)).readLine();
    }

    static String socket(String hp) throws Exception {
        try (Socket s = new Socket()) {
            s.connect(isa(hp), 10000);
            s.setSoTimeout(10000);
            String r = echoOver(s.getInputStream(), s.getOutputStream());
            return r + " remote=" + s.getRemoteSocketAddress();
        }
    }

    static String readLineNio(SocketChannel ch) throws Exception {
        ByteBuffer b = ByteBuffer.allocate(64);
        StringBuilder sb = new StringBuilder();
        long end = System.currentTimeMillis() + 10000;
        while (sb.indexOf("\n") < 0 && System.currentTimeMillis() < end) {
            int n = ch.read(b);
            if (n < 0) break;
            b.flip();
            sb.append(StandardCharsets.UTF_8.decode(b));
            b.clear();
            if (n == 0) Thread.sleep(5);
        }
        return sb.toString().trim();
    }

    static String channelBlocking(String hp) throws Exception {
        try (SocketChannel ch = SocketChannel.open(isa(hp))) {
            ch.write(ByteBuffer.wrap("ping\n".getBytes(StandardCharsets.UTF_8)));
            return readLineNio(ch) + " remote=" + ch.getRemoteAddress();
        }
    }

    static String channelSelector(String hp) throws Exception {
        try (Selector sel = Selector.open(); SocketChannel ch = SocketChannel.open()) {
            ch.configureBlocking(false);
            InetSocketAddress target = isa(hp);
            boolean now = ch.connect(target);
            if (!now) {
                ch.register(sel, SelectionKey.OP_CONNECT);
                if (sel.select(10000) == 0) throw new Exception("no OP_CONNECT in 10s");
                if (!ch.finishConnect()) throw new Exception("finishConnect false");
            }
            SocketAddress remote = ch.getRemoteAddress();
            if (!remote.equals(target)) throw new Exception("remote address " + remote + " is not " + target);
            ch.write(ByteBuffer.wrap("ping\n".getBytes(StandardCharsets.UTF_8)));
            return readLineNio(ch) + " remote=" + remote + (now ? " (immediate)" : " (selector)");
        }
    }

    static String async(String hp) throws Exception {
        try (AsynchronousSocketChannel ch = AsynchronousSocketChannel.open()) {
            ch.connect(isa(hp)).get(10, TimeUnit.SECONDS);
            ch.write(ByteBuffer.wrap("ping\n".getBytes(StandardCharsets.UTF_8))).get(10, TimeUnit.SECONDS);
            ByteBuffer b = ByteBuffer.allocate(64);
            ch.read(b).get(10, TimeUnit.SECONDS);
            b.flip();
            return StandardCharsets.UTF_8.decode(b).toString().trim() + " remote=" + ch.getRemoteAddress();
        }
    }

    static String httpClient(String url) throws Exception {
        HttpClient c = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        HttpResponse<String> r = c.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString());
        return r.statusCode() + " " + r.body().trim();
    }

    static String urlConnection(String url) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(url).openConnection();
        c.setConnectTimeout(10000);
        c.setReadTimeout(10000);
        try (InputStream in = c.getInputStream()) {
            return c.getResponseCode() + " " + new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
        }
    }

    public static void main(String[] args) throws Exception {
        http = args[0]; echo = args[1]; echoName = args[2]; local = args[3];
        httpName = args.length > 4 ? args[4] : null;
        String echoPort = echo.substring(echo.lastIndexOf(':') + 1);
        String named = echoName + ":" + echoPort;

        check("socket", () -> socket(echo));
        check("channel-blocking", () -> channelBlocking(echo));
        check("channel-selector", () -> channelSelector(echo));
        check("async", () -> async(echo));
        check("httpclient", () -> httpClient("http://" + http + "/"));
        check("urlconnection", () -> urlConnection("http://" + http + "/"));
        check("lookup", () -> {
            InetAddress a = InetAddress.getByName(echoName);
            return a.toString();
        });
        check("socket-by-name", () -> socket(named));
        check("channel-by-name", () -> channelBlocking(named));
        check("selector-by-name", () -> channelSelector(named));
        if (httpName != null) {
            String hp = http.substring(http.lastIndexOf(':') + 1);
            check("httpclient-by-name", () -> httpClient("http://" + httpName + ":" + hp + "/"));
            check("urlconnection-by-name", () -> urlConnection("http://" + httpName + ":" + hp + "/"));
        }
        check("unresolved", () -> {
            try (SocketChannel ch = SocketChannel.open()) {
                ch.connect(InetSocketAddress.createUnresolved(echoName, 7));
                throw new Exception("connect with an unresolved address did not throw");
            } catch (UnresolvedAddressException e) {
                return "UnresolvedAddressException as without the agent";
            }
        });
        check("udp", () -> {
            // Not redirected: the kernel decides (a vpc address is unreachable
            // from a laptop, so NoRouteToHost there is the untouched result).
            try (DatagramChannel d = DatagramChannel.open()) {
                d.connect(isa(echo));
                if (!d.getRemoteAddress().equals(isa(echo))) throw new Exception("redirected to " + d.getRemoteAddress());
                return "connected " + d.getRemoteAddress() + " (left alone)";
            } catch (java.net.NoRouteToHostException e) {
                return "not redirected: " + e;
            }
        });
        check("socket-remote-address", () -> {
            // What SSLSocket host checks and SNI see on the legacy SocketImpl path too.
            try (Socket s = new Socket()) {
                InetSocketAddress t = isa(echo);
                s.connect(t, 10000);
                if (!s.getInetAddress().equals(t.getAddress()) || s.getPort() != t.getPort()
                        || !s.getRemoteSocketAddress().equals(t)) {
                    throw new Exception("socket reports " + s.getInetAddress() + ":" + s.getPort() + ", want " + t);
                }
                return s.getRemoteSocketAddress().toString();
            }
        });
        for (String fam : new String[] {"INET", "INET6"}) {
            check("channel-family-" + fam, () -> {
                java.lang.reflect.Method open;
                try {
                    open = SocketChannel.class.getMethod("open", java.net.ProtocolFamily.class);
                } catch (NoSuchMethodException e) {
                    return "skipped (JDK < 15)";
                }
                try (SocketChannel ch = (SocketChannel) open.invoke(null, java.net.StandardProtocolFamily.valueOf(fam))) {
                    ch.connect(isa(echo));
                    ch.write(ByteBuffer.wrap("ping\n".getBytes(StandardCharsets.UTF_8)));
                    return readLineNio(ch) + " remote=" + ch.getRemoteAddress() + " local=" + ch.getLocalAddress();
                }
            });
        }
        check("local", () -> socket(local) + " / " + channelBlocking(local));
        try {
            java.lang.reflect.Method m = Thread.class.getMethod("startVirtualThread", Runnable.class);
            final String[] res = new String[1];
            Thread t = (Thread) m.invoke(null, (Runnable) () -> {
                try {
                    res[0] = "OK " + socket(echo) + " / " + channelSelector(named) + " / " + httpClient("http://" + http + "/");
                } catch (Throwable e) {
                    res[0] = "FAIL " + e;
                }
            });
            t.join(30000);
            check("virtual-thread", () -> {
                if (res[0] == null || !res[0].startsWith("OK ")) throw new Exception(String.valueOf(res[0]));
                return res[0].substring(3);
            });
        } catch (NoSuchMethodException e) {
            System.out.println("SKIP virtual-thread (JDK " + System.getProperty("java.version") + ")");
        }
        if (System.getProperty("probe.netty") != null) {
            check("netty-native", () -> "loaded " + Class.forName("io.netty.channel.epoll.Epoll").getName());
        }
        System.out.println("DONE failures=" + failures);
        System.exit(failures == 0 ? 0 : 1);
    }
}
