import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.Arrays;

/**
 * Connect latency: N times connect to host:port (java.net.Socket, which
 * honours socksProxyHost, so the same program measures the SOCKS-args path),
 * write one byte and read it back (echo), close. Prints percentiles in µs.
 * Args: host:port count [warmup]
 */
public class AgentBench {
    public static void main(String[] args) throws Exception {
        final String user = System.getProperty("bench.socksUser"), pass = System.getProperty("bench.socksPass");
        if (user != null) {
            java.net.Authenticator.setDefault(new java.net.Authenticator() {
                protected java.net.PasswordAuthentication getPasswordAuthentication() {
                    return new java.net.PasswordAuthentication(user, pass.toCharArray());
                }
            });
        }
        String hp = args[0];
        int n = Integer.parseInt(args[1]);
        int warm = args.length > 2 ? Integer.parseInt(args[2]) : 20;
        int i = hp.lastIndexOf(':');
        InetSocketAddress a = new InetSocketAddress(hp.substring(0, i), Integer.parseInt(hp.substring(i + 1)));
        long[] t = new long[n];
        for (int k = -warm; k < n; k++) {
            long t0 = System.nanoTime();
            try (Socket s = new Socket()) {
                s.connect(a, 10000);
                OutputStream o = s.getOutputStream();
                InputStream in = s.getInputStream();
                o.write('x');
                if (in.read() != 'x') throw new Exception("bad echo");
            }
            if (k >= 0) t[k] = (System.nanoTime() - t0) / 1000;
        }
        Arrays.sort(t);
        System.out.println("BENCH n=" + n + " p50=" + t[n / 2] + "us p90=" + t[n * 9 / 10] + "us p99=" + t[Math.min(n - 1, n * 99 / 100)] + "us");
    }
}
