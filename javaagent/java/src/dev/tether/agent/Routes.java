package dev.tether.agent;

import java.net.InetAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/** The proxy's routes: CIDRs, domain suffixes, and the fake address range. */
final class Routes {
    private final List<byte[]> nets = new ArrayList<byte[]>();
    private final List<Integer> bits = new ArrayList<Integer>();
    private final List<String> domains = new ArrayList<String>();
    private byte[] fakeNet;
    private int fakeBits = -1;

    void addCIDR(String cidr) throws Exception {
        int slash = cidr.indexOf('/');
        byte[] a = parseIP(cidr.substring(0, slash));
        nets.add(a);
        bits.add(Integer.parseInt(cidr.substring(slash + 1)));
    }

    void setFake(String cidr) throws Exception {
        int slash = cidr.indexOf('/');
        fakeNet = parseIP(cidr.substring(0, slash));
        fakeBits = Integer.parseInt(cidr.substring(slash + 1));
    }

    void addDomain(String d) { domains.add(normalize(d)); }

    int size() { return nets.size() + domains.size(); }

    static byte[] parseIP(String s) throws Exception {
        // Literal only: getByName on a literal never does a lookup.
        return InetAddress.getByName(s).getAddress();
    }

    static String normalize(String name) {
        String n = name.toLowerCase(Locale.ROOT);
        if (n.endsWith(".")) n = n.substring(0, n.length() - 1);
        return n;
    }

    boolean matches(InetAddress a) {
        // Never loopback/wildcard/link-local: the control connection and the
        // one-shot forwards are loopback connects themselves (a route-all
        // 0.0.0.0/0 must not catch them).
        if (a.isLoopbackAddress() || a.isAnyLocalAddress() || a.isLinkLocalAddress()) return false;
        byte[] b = a.getAddress();
        if (isFake(b)) return true;
        for (int i = 0; i < nets.size(); i++) {
            if (in(b, nets.get(i), bits.get(i))) return true;
        }
        return false;
    }

    boolean isFake(byte[] b) { return fakeBits >= 0 && in(b, fakeNet, fakeBits); }

    boolean matchesName(String host) {
        if (domains.isEmpty() || host.isEmpty()) return false;
        char c0 = host.charAt(0);
        if ((c0 >= '0' && c0 <= '9') || c0 == '[' || host.indexOf(':') >= 0) {
            // a literal never matches a domain; a name may start with a digit, check the last label
            String last = host.substring(host.lastIndexOf('.') + 1);
            if (last.isEmpty() || Character.isDigit(last.charAt(0)) || host.indexOf(':') >= 0) return false;
        }
        String n = normalize(host);
        for (String d : domains) {
            if (n.equals(d) || (n.endsWith(d) && n.length() > d.length() && n.charAt(n.length() - d.length() - 1) == '.')) return true;
        }
        return false;
    }

    private static boolean in(byte[] a, byte[] net, int bits) {
        if (a.length != net.length) return false;
        int full = bits / 8, rest = bits % 8;
        for (int i = 0; i < full; i++) if (a[i] != net[i]) return false;
        if (rest == 0) return true;
        int mask = (0xff << (8 - rest)) & 0xff;
        return (a[full] & mask) == (net[full] & mask);
    }
}
