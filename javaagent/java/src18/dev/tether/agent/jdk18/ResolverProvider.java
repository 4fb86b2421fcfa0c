package dev.tether.agent.jdk18;

import dev.tether.agent.Hook;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.net.spi.InetAddressResolver;
import java.net.spi.InetAddressResolverProvider;
import java.util.stream.Stream;

/**
 * JDK 18+ name resolution: names under the route domains resolve to fake
 * addresses from the backend (the backend maps them back to the name when
 * the connect arrives); every other name goes to the built-in resolver.
 */
public final class ResolverProvider extends InetAddressResolverProvider {
    @Override
    public InetAddressResolver get(Configuration config) {
        final InetAddressResolver builtin = config.builtinResolver();
        return new InetAddressResolver() {
            @Override
            public Stream<InetAddress> lookupByName(String host, LookupPolicy policy) throws UnknownHostException {
                if (!Hook.routed(host)) return builtin.lookupByName(host, policy);
                if ((policy.characteristics() & LookupPolicy.IPV4) == 0) {
                    throw new UnknownHostException(host + ": the tether fake address is IPv4 and the lookup asked for IPv6 only");
                }
                return Stream.of(Hook.fakeAddress(host, Hook.resolve(host)));
            }

            @Override
            public String lookupByAddress(byte[] addr) throws UnknownHostException {
                String n = Hook.nameOf(addr);
                return n != null ? n : builtin.lookupByAddress(addr);
            }
        };
    }

    @Override
    public String name() {
        return "tether";
    }
}
