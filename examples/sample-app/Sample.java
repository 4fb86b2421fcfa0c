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
 * Exits 0 when both checks pass, 1 otherwise. The targets can be changed
 * with -Dsample.ordersUrl=... and -Dsample.db=HOST:PORT.
 */
public class Sample {
    private static final int TIMEOUT_MS = 10_000;

    public static void main(String[] args) {
        String ordersUrl = System.getProperty("sample.ordersUrl", "http://orders.sandbox.internal/");
        String db = System.getProperty("sample.db", "10.99.0.11:5432");
        boolean ok = true;
        try {
            System.out.println("GET " + ordersUrl + " -> " + get(ordersUrl));
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

    /** GETs url and returns the body of a 200 answer. */
    static String get(String url) throws IOException {
        HttpURLConnection c = (HttpURLConnection) URI.create(url).toURL().openConnection();
        c.setConnectTimeout(TIMEOUT_MS);
        c.setReadTimeout(TIMEOUT_MS);
        try {
            int status = c.getResponseCode();
            if (status != 200) {
                throw new IOException("HTTP " + status);
            }
            try (InputStream in = c.getInputStream()) {
                return new String(in.readAllBytes(), StandardCharsets.UTF_8).trim();
            }
        } finally {
            c.disconnect();
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
