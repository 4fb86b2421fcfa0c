import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;

/**
 * The Tether sandbox sample: a plain Java 11+ program that talks to two
 * services of a private network it cannot reach by itself. Run it with
 * Tether's interconnect on (run configuration "sample" written by
 * `tether-agent sandbox`) and both checks pass; run it without and they fail.
 *
 * For the call log (tether launch --log-calls) it makes three GETs on one
 * keep-alive connection, one to a slow endpoint, and one with a W3C
 * traceparent to an endpoint that answers 500.
 *
 * Exits 0 when both checks pass, 1 otherwise. The targets can be changed
 * with -Dsample.ordersUrl=... and -Dsample.db=HOST:PORT.
 */
public class Sample {
    private static final int TIMEOUT_MS = 10_000;
    /** The W3C Trace Context example trace id, sent to /fail. */
    static final String TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    public static void main(String[] args) {
        String ordersUrl = System.getProperty("sample.ordersUrl", "http://orders.sandbox.internal/");
        String db = System.getProperty("sample.db", "10.99.0.11:5432");
        boolean ok = true;
        try {
            String body = get(ordersUrl);
            // Two more on the same connection (the JDK keeps it alive).
            get(ordersUrl);
            get(ordersUrl);
            System.out.println("GET " + ordersUrl + " -> " + body + " (3 requests, one keep-alive connection)");
            long t0 = System.nanoTime();
            get(ordersUrl + "slow?ms=300");
            System.out.println("GET " + ordersUrl + "slow?ms=300 -> answered after " + (System.nanoTime() - t0) / 1_000_000 + " ms");
            int status = status(ordersUrl + "fail", TRACEPARENT);
            if (status != 500) {
                throw new IOException("/fail answered " + status + ", want 500");
            }
            System.out.println("GET " + ordersUrl + "fail -> " + status + " (as expected; traceparent " + TRACEPARENT + ")");
        } catch (Exception e) {
            ok = false;
            System.out.println("GET " + ordersUrl + " FAILED: " + e);
        }
        try {
            System.out.println("echo via " + db + " -> " + echo(db));
        } catch (Exception e) {
            ok = false;
            System.out.println("echo via " + db + " FAILED: " + e);
        }
        System.out.println(ok ? "OK: the private network is reachable" : "FAILED");
        System.exit(ok ? 0 : 1);
    }

    /**
     * GETs url and returns the body of a 200 answer. The body is read to
     * the end and the stream closed without disconnect(): the JDK then
     * keeps the connection for the next request to the same server.
     */
    static String get(String url) throws IOException {
        HttpURLConnection c = open(url);
        int status = c.getResponseCode();
        if (status != 200) {
            drain(c.getErrorStream());
            throw new IOException("HTTP " + status);
        }
        try (InputStream in = c.getInputStream()) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
        }
    }

    /** GETs url with a traceparent header and returns the status. */
    static int status(String url, String traceparent) throws IOException {
        HttpURLConnection c = open(url);
        c.setRequestProperty("traceparent", traceparent);
        int status = c.getResponseCode();
        drain(status >= 400 ? c.getErrorStream() : c.getInputStream());
        return status;
    }

    static HttpURLConnection open(String url) throws IOException {
        HttpURLConnection c = (HttpURLConnection) URI.create(url).toURL().openConnection();
        c.setConnectTimeout(TIMEOUT_MS);
        c.setReadTimeout(TIMEOUT_MS);
        return c;
    }

    static void drain(InputStream in) throws IOException {
        if (in != null) {
            try (in) {
                in.readAllBytes();
            }
        }
    }

    /** Sends one line to an echo service at "host:port" and checks that it comes back. */
    static String echo(String hostPort) throws IOException {
        int colon = hostPort.lastIndexOf(':');
        String host = hostPort.substring(0, colon);
        int port = Integer.parseInt(hostPort.substring(colon + 1));
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(host, port), TIMEOUT_MS);
            s.setSoTimeout(TIMEOUT_MS);
            String line = "hello from Sample " + System.nanoTime();
            OutputStream out = s.getOutputStream();
            out.write((line + "\n").getBytes(StandardCharsets.UTF_8));
            out.flush();
            BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
            String back = in.readLine();
            if (!line.equals(back)) {
                throw new IOException("sent \"" + line + "\", got back \"" + back + "\"");
            }
            return back;
        }
    }
}
