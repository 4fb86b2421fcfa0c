package dev.tether.agent.jdk9;

import java.lang.instrument.Instrumentation;
import java.lang.invoke.MethodHandles;
import java.net.InetAddress;
import java.util.Collections;

/**
 * JDK 9+: defines a class (already renamed into package java.net) inside
 * java.base. java.base opens java.net to the agent's module for that, and
 * only that, through Instrumentation.redefineModule.
 */
public final class Define {
    private Define() {}

    public static Class<?> inJavaNet(Instrumentation inst, byte[] cls) throws Exception {
        Module base = Object.class.getModule();
        Module me = Define.class.getModule();
        if (!base.isOpen("java.net", me)) {
            inst.redefineModule(base, Collections.emptySet(), Collections.emptyMap(),
                    Collections.singletonMap("java.net", Collections.singleton(me)), Collections.emptySet(), Collections.emptyMap());
        }
        MethodHandles.Lookup l = MethodHandles.privateLookupIn(InetAddress.class, MethodHandles.lookup());
        return l.defineClass(cls);
    }
}
