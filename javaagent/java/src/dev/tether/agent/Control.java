package dev.tether.agent;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.Charset;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The control connection to the backend: one TCP connection to 127.0.0.1,
 * line-based, requests multiplexed by id. No {@code synchronized} anywhere
 * (virtual threads would pin): writes take a ReentrantLock, answers
 * complete CompletableFutures from one daemon reader thread.
 *
 * <pre>
 * agent:   HELLO token java-version pid
 * backend: OK | ERR message ; then FAKE cidr, CIDR cidr..., DOMAIN name..., END
 * agent:   CONNECT id ip port [name][TAB frame]   backend: PORT id port | ERR id message
 * agent:   RESOLVE id name             backend: ADDR id ip   | ERR id message
 * agent:   LOG message                 (no answer)
 * </pre>
 */
final class Control {
    private static final Charset UTF8 = Charset.forName("UTF-8");
    private static final long CONNECT_TIMEOUT_MS = 30000, RESOLVE_TIMEOUT_MS = 15000;

    private final Socket sock;
    private final BufferedReader in;
    private final OutputStream out;
    private final ReentrantLock writeLock = new ReentrantLock();
    private final ConcurrentHashMap<Long, CompletableFuture<String>> pending = new ConcurrentHashMap<Long, CompletableFuture<String>>();
    private final AtomicLong ids = new AtomicLong();
    private volatile String closed;

    private Control(Socket sock) throws IOException {
        this.sock = sock;
        this.in = new BufferedReader(new InputStreamReader(sock.getInputStream(), UTF8));
        this.out = sock.getOutputStream();
    }

    /** Connects, authenticates and reads the routes. */
    static Control open(String hostPort, String token, Routes routes) throws Exception {
        int colon = hostPort.lastIndexOf(':');
        if (colon < 0) throw new IllegalArgumentException("bad control address " + hostPort);
        String host = hostPort.substring(0, colon);
        if (!host.equals("127.0.0.1") && !host.equals("[::1]") && !host.equals("::1")) {
            throw new IllegalArgumentException("control address must be loopback: " + hostPort);
        }
        int port = Integer.parseInt(hostPort.substring(colon + 1));
        Socket s = new Socket();
        try {
            s.setTcpNoDelay(true);
            s.connect(new InetSocketAddress(InetAddress.getByName(host.replace("[", "").replace("]", "")), port), 3000);
            s.setSoTimeout(5000);
            Control c = new Control(s);
            c.write("HELLO " + token + " " + System.getProperty("java.version") + " " + pid());
            String first = c.in.readLine();
            if (first == null) throw new IOException("control connection closed during hello");
            if (!first.equals("OK")) throw new IOException("refused by the backend: " + first);
            for (;;) {
                String line = c.in.readLine();
                if (line == null) throw new IOException("control connection closed during hello");
                if (line.equals("END")) break;
                if (line.startsWith("FAKE ")) routes.setFake(line.substring(5));
                else if (line.startsWith("CIDR ")) routes.addCIDR(line.substring(5));
                else if (line.startsWith("DOMAIN ")) routes.addDomain(line.substring(7));
            }
            s.setSoTimeout(0);
            final Control cc = c;
            Thread t = new Thread(new Runnable() {
                public void run() { cc.readLoop(); }
            }, "tether-agent-control");
            t.setDaemon(true);
            t.start();
            return c;
        } catch (Exception e) {
            try { s.close(); } catch (IOException ignored) { /* closing after a failure */ }
            throw e;
        }
    }

    private static String pid() {
        try { // ProcessHandle is JDK 9+; this class is built for Java 8
            Class<?> ph = Class.forName("java.lang.ProcessHandle");
            Object cur = ph.getMethod("current").invoke(null);
            return String.valueOf(ph.getMethod("pid").invoke(cur));
        } catch (Exception e) {
            return "0";
        }
    }

    private void readLoop() {
        try {
            for (;;) {
                String line = in.readLine();
                if (line == null) break;
                // "<VERB> <id> <rest>"
                int a = line.indexOf(' ');
                int b = a < 0 ? -1 : line.indexOf(' ', a + 1);
                if (a < 0) continue;
                long id;
                try {
                    id = Long.parseLong(b < 0 ? line.substring(a + 1) : line.substring(a + 1, b));
                } catch (NumberFormatException e) {
                    continue;
                }
                CompletableFuture<String> f = pending.remove(id);
                if (f != null) f.complete(line.substring(0, a) + (b < 0 ? "" : line.substring(b)));
            }
            fail("control connection closed by the backend");
        } catch (IOException e) {
            fail("control connection lost: " + e.getMessage());
        }
    }

    private void fail(String why) {
        closed = why;
        Log.info(why + "; connects to routed destinations now fail");
        for (Long id : pending.keySet()) {
            CompletableFuture<String> f = pending.remove(id);
            if (f != null) f.complete("ERR " + why);
        }
    }

    private void write(String line) throws IOException {
        byte[] b = (line + "\n").getBytes(UTF8);
        writeLock.lock();
        try {
            out.write(b);
            out.flush();
        } finally {
            writeLock.unlock();
        }
    }

    private String call(String verb, String args, long timeoutMs) throws IOException {
        String why = closed;
        if (why != null) throw new ConnectException("tether: " + why);
        long id = ids.incrementAndGet();
        CompletableFuture<String> f = new CompletableFuture<String>();
        pending.put(id, f);
        try {
            write(verb + " " + id + " " + args);
            if (closed != null && pending.remove(id) != null) throw new ConnectException("tether: " + closed);
            return f.get(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("tether: interrupted while waiting for the backend");
        } catch (ExecutionException e) {
            throw new IOException("tether: " + e.getCause());
        } catch (TimeoutException e) {
            throw new ConnectException("tether: no answer from the backend in " + timeoutMs / 1000 + "s");
        } finally {
            pending.remove(id);
        }
    }

    /** Asks for a one-shot loopback port forwarding to a:port through the tunnel. */
    int connect(InetAddress a, int port) throws IOException {
        String ip = a.getHostAddress();
        int pct = ip.indexOf('%');
        if (pct >= 0) ip = ip.substring(0, pct);
        String args = ip + " " + port;
        // "name/ip" without a reverse lookup: the name the app used, if any.
        String s = a.toString();
        int slash = s.indexOf('/');
        if (slash > 0) args += " " + s.substring(0, slash);
        String frame = callerFrame();
        if (frame != null) args += "\t" + frame;
        String ans = call("CONNECT", args, CONNECT_TIMEOUT_MS);
        if (ans.startsWith("PORT ")) {
            try {
                return Integer.parseInt(ans.substring(5).trim());
            } catch (NumberFormatException e) {
                throw new ConnectException("tether: bad answer " + ans);
            }
        }
        throw new ConnectException(ans.startsWith("ERR ") ? ans.substring(4) : "tether: bad answer " + ans);
    }

    /**
     * The first stack frame outside the JDK and the agent, e.g.
     * "com.acme.OrderClient.place(OrderClient.java:42)": the code that opened
     * the connection, shown with its calls. Null if there is none.
     */
    static String callerFrame() {
        StackTraceElement[] st = new Throwable().getStackTrace();
        for (StackTraceElement e : st) {
            String cn = e.getClassName();
            if (cn.startsWith("java.") || cn.startsWith("javax.") || cn.startsWith("jdk.") || cn.startsWith("sun.")
                    || cn.startsWith("com.sun.") || cn.startsWith("dev.tether.agent.")) continue;
            String file = e.getFileName() == null ? "Unknown Source"
                    : e.getLineNumber() >= 0 ? e.getFileName() + ":" + e.getLineNumber() : e.getFileName();
            String f = cn + "." + e.getMethodName() + "(" + file + ")";
            f = f.replace('\t', ' ').replace('\n', ' ').replace('\r', ' ');
            return f.length() > 500 ? f.substring(0, 500) : f;
        }
        return null;
    }

    /** Asks for the fake address of a route-domain name. */
    String resolve(String name) throws IOException {
        String ans = call("RESOLVE", name, RESOLVE_TIMEOUT_MS);
        if (ans.startsWith("ADDR ")) return ans.substring(5).trim();
        throw new IOException(ans.startsWith("ERR ") ? ans.substring(4) : "bad answer " + ans);
    }

    /** A line for the connection log; best effort. */
    void log(String msg) {
        try {
            write("LOG " + msg.replace('\n', ' '));
        } catch (IOException e) {
            Log.info(msg);
        }
    }
}
