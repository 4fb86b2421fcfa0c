package io.netty.channel.epoll;

/** Stand-in for Netty's native epoll transport: loading it must make the agent warn. */
public final class Epoll {
    public static boolean isAvailable() { return true; }
}
