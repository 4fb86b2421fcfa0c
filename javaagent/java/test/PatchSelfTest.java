import dev.tether.agent.Patcher;
import java.io.InputStream;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;

/**
 * Patcher test with verification and behaviour: Sample's methods (switches
 * at every alignment, exception handlers, loops, constructors with a `new`
 * across branches, long first frames) get prologues; the patched class is
 * defined in a fresh loader (verified, as any non-boot class) and every
 * method must return what the original returns, with the prologue run.
 */
public class PatchSelfTest {
    public static int calls;

    public static void count() { calls++; }

    public static int twice(int x) { return 2 * x; }

    public static String tag(String s) { return s == null ? null : "p:" + s; }

    public static class Sample {
        public static int sw(int a) {
            switch (a) { case 1: return 10; case 2: return 20; case 3: return 30; case 7: return 70; default: return -1; }
        }
        public static int sw1(int a) { int z = a + 1; switch (z) { case 100: return 1; case 5000: return 2; default: return 3; } }
        public static int sw2(int a) { long q = a; switch ((int) q) { case 1: case 2: case 3: case 4: return 4; default: return 5; } }
        public static int tc(int a) {
            try { if (a == 0) throw new IllegalStateException("zero"); return 100 / a; }
            catch (IllegalStateException e) { return -7; }
            finally { calls2++; }
        }
        public static int calls2;
        public static String uninit(int a) { return new StringBuilder(a > 2 ? "big" : "small").append(a).toString(); }
        public static int loop(int a) { int s = 0; for (int i = 0; i < a; i++) { if (i % 3 == 0) continue; s += i; } return s; }
        public static int longFirst(int a) {
            int x = a; x += 1; x += 2; x += 3; x += 4; x += 5; x += 6; x += 7; x += 8; x += 9; x += 10;
            x += 11; x += 12; x += 13; x += 14; x += 15; x += 16; x += 17; x += 18; x += 19; x += 20;
            if (x > 1000) return -x;
            return x;
        }
        public static String str(String s) { return s == null ? "null" : s.toUpperCase(); }
        public static int wide(int a) {
            long l0 = 1, l1 = 2, l2 = 3; double d0 = 4; int i0 = a;
            Object[] o = new Object[300];
            for (int i = 0; i < o.length; i++) o[i] = i;
            return (int) (l0 + l1 + l2 + d0) + i0 + (Integer) o[299];
        }
    }

    static class Loader extends ClassLoader {
        final byte[] b;
        Loader(byte[] b) { super(PatchSelfTest.class.getClassLoader()); this.b = b; }
        @Override protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
            if (name.equals("PatchSelfTest$Sample")) {
                Class<?> c = findLoadedClass(name);
                if (c == null) c = defineClass(name, b, 0, b.length);
                return c;
            }
            return super.loadClass(name, resolve);
        }
    }

    public static void main(String[] args) throws Exception {
        byte[] orig;
        try (InputStream in = PatchSelfTest.class.getResourceAsStream("PatchSelfTest$Sample.class")) {
            orig = in.readAllBytes();
        }
        byte[] cls = orig;
        List<String> patched = new ArrayList<>();
        for (Method m : Sample.class.getDeclaredMethods()) {
            if (!Modifier.isStatic(m.getModifiers())) continue;
            String desc = m.getParameterTypes()[0] == int.class ? "(I)" : "(Ljava/lang/String;)";
            desc += m.getReturnType() == int.class ? "I" : "Ljava/lang/String;";
            if (m.getParameterTypes()[0] == int.class) {
                // count(); x = twice(x)  -> 1 + 1 + 3 + 3 + 1 = 9 bytes, padded to 12
                cls = Patcher.patch(cls, m.getName(), desc, Patcher.Op.call("PatchSelfTest", "count", "()V"),
                        Patcher.Op.iload(0), Patcher.Op.call("PatchSelfTest", "twice", "(I)I"), Patcher.Op.istore(0));
            } else {
                cls = Patcher.patch(cls, m.getName(), desc, Patcher.Op.aload(0),
                        Patcher.Op.call("PatchSelfTest", "tag", "(Ljava/lang/String;)Ljava/lang/String;"), Patcher.Op.astore(0));
            }
            patched.add(m.getName());
        }
        Class<?> p = new Loader(cls).loadClass("PatchSelfTest$Sample");
        if (p.getClassLoader() == Sample.class.getClassLoader()) throw new AssertionError("not redefined");
        int fails = 0;
        for (String name : patched) {
            Method om = null, pm = null;
            for (Method m : Sample.class.getDeclaredMethods()) if (m.getName().equals(name)) om = m;
            for (Method m : p.getDeclaredMethods()) if (m.getName().equals(name)) pm = m;
            Object[] inputs = om.getParameterTypes()[0] == int.class ? new Object[] {0, 1, 2, 3, 50, 2500, 700}
                    : new Object[] {null, "x", "abc"};
            for (Object in : inputs) {
                int before = calls;
                Object want = om.getParameterTypes()[0] == int.class ? om.invoke(null, 2 * (Integer) in)
                        : om.invoke(null, in == null ? null : "p:" + in);
                Object got = pm.invoke(null, in);
                boolean counted = om.getParameterTypes()[0] != int.class || calls == before + 1;
                if (!String.valueOf(want).equals(String.valueOf(got)) || !counted) {
                    System.out.println("FAIL " + name + "(" + in + "): want " + want + " got " + got + " counted " + counted);
                    fails++;
                }
            }
        }
        if (fails > 0) throw new AssertionError(fails + " failures");
        System.out.println("OK " + patched.size() + " methods patched, verified and equivalent");
    }
}
