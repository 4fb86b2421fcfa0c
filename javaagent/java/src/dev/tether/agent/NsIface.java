package dev.tether.agent;

import java.net.InetAddress;
import java.net.UnknownHostException;

/**
 * Mirror of java.net.InetAddress.NameService (JDK 9-17, package-private):
 * NameServiceShim is compiled against this and renamed, byte-wise, to
 * implement the real one.
 */
public interface NsIface {
    InetAddress[] lookupAllHostAddr(String host) throws UnknownHostException;

    String getHostByAddr(byte[] addr) throws UnknownHostException;
}
