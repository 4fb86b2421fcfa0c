package dev.tether.agent;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * A minimal class-file patcher: inserts a straight-line prologue at the
 * start of one method. The prologue calls static hooks and stores their
 * results back into argument slots; it has no branches, so no new
 * StackMapTable frame is needed. Its length is padded (with leading nops) to
 * a multiple of 4 so that tableswitch/lookupswitch padding still holds.
 * Everything that holds a code offset is shifted: the exception table, the
 * first StackMapTable frame (and uninitialized(offset) types in any frame),
 * LineNumberTable, LocalVariableTable and LocalVariableTypeTable. Other
 * Code attributes that hold offsets (type annotations) are dropped.
 * Java 8 API only, no dependencies.
 */
public final class Patcher {
    /** One step of a prologue. */
    public static final class Op {
        final int kind; // 0 load-ref, 1 load-int, 2 store-ref, 3 store-int, 4 invokestatic, 5 getfield, 6 putfield
        final int slot;
        final String owner, name, desc;

        private Op(int kind, int slot, String owner, String name, String desc) {
            this.kind = kind; this.slot = slot; this.owner = owner; this.name = name; this.desc = desc;
        }
        public static Op aload(int slot) { return new Op(0, slot, null, null, null); }
        public static Op iload(int slot) { return new Op(1, slot, null, null, null); }
        public static Op astore(int slot) { return new Op(2, slot, null, null, null); }
        public static Op istore(int slot) { return new Op(3, slot, null, null, null); }
        public static Op call(String owner, String name, String desc) { return new Op(4, -1, owner, name, desc); }
        /** getfield owner.name:desc (single-slot types only). */
        public static Op getfield(String owner, String name, String desc) { return new Op(5, -1, owner, name, desc); }
        /** putfield owner.name:desc (single-slot types only). */
        public static Op putfield(String owner, String name, String desc) { return new Op(6, -1, owner, name, desc); }
    }

    /** Thrown when the class cannot be patched (method missing, bad format). */
    public static final class PatchException extends Exception {
        public PatchException(String msg) { super(msg); }
    }

    private Patcher() {}

    // ---- class file model (only what we need) ----

    private static final class Reader {
        final byte[] b;
        int p;
        Reader(byte[] b, int p) { this.b = b; this.p = p; }
        int u1() { return b[p++] & 0xff; }
        int u2() { int v = ((b[p] & 0xff) << 8) | (b[p + 1] & 0xff); p += 2; return v; }
        int u4() { int v = ((b[p] & 0xff) << 24) | ((b[p + 1] & 0xff) << 16) | ((b[p + 2] & 0xff) << 8) | (b[p + 3] & 0xff); p += 4; return v; }
    }

    private static int u2(byte[] b, int p) { return ((b[p] & 0xff) << 8) | (b[p + 1] & 0xff); }

    private static int u4(byte[] b, int p) {
        return ((b[p] & 0xff) << 24) | ((b[p + 1] & 0xff) << 16) | ((b[p + 2] & 0xff) << 8) | (b[p + 3] & 0xff);
    }

    /** Constant pool view: offsets of entries and UTF-8 decoding. */
    private static final class Pool {
        final byte[] b;
        final int count;       // constant_pool_count
        final int[] off;       // offset of each entry's tag
        final int end;         // offset just past the pool
        final List<byte[]> added = new ArrayList<byte[]>();
        int next;              // next free index

        Pool(byte[] b) throws PatchException {
            this.b = b;
            Reader r = new Reader(b, 8);
            count = r.u2();
            off = new int[count];
            for (int i = 1; i < count; i++) {
                off[i] = r.p;
                int tag = r.u1();
                switch (tag) {
                    case 1: { int len = r.u2(); r.p += len; break; }
                    case 3: case 4: r.p += 4; break;
                    case 5: case 6: r.p += 8; i++; break;
                    case 7: case 8: case 16: case 19: case 20: r.p += 2; break;
                    case 9: case 10: case 11: case 12: case 17: case 18: r.p += 4; break;
                    case 15: r.p += 3; break;
                    default: throw new PatchException("unknown constant pool tag " + tag + " at " + i);
                }
            }
            end = r.p;
            next = count;
        }

        String utf8(int i) {
            int p = off[i];
            if (b[p] != 1) return null;
            int len = u2(b, p + 1);
            return decode(b, p + 3, len);
        }

        private int add(byte[] e, int slots) {
            added.add(e);
            int i = next;
            next += slots;
            return i;
        }

        int addUtf8(String s) {
            ByteArrayOutputStream bo = new ByteArrayOutputStream();
            DataOutputStream o = new DataOutputStream(bo);
            try { o.writeByte(1); o.writeUTF(s); } catch (IOException e) { throw new RuntimeException(e); }
            return add(bo.toByteArray(), 1);
        }

        int addRef(int tag, int a, int c) {
            return add(new byte[] {(byte) tag, (byte) (a >> 8), (byte) a, (byte) (c >> 8), (byte) c}, 1);
        }

        int addClass(String internalName) {
            int n = addUtf8(internalName);
            return add(new byte[] {7, (byte) (n >> 8), (byte) n}, 1);
        }

        int addMethodref(String owner, String name, String desc) {
            int c = addClass(owner);
            int nt = addRef(12, addUtf8(name), addUtf8(desc));
            return addRef(10, c, nt);
        }

        int addFieldref(String owner, String name, String desc) {
            int c = addClass(owner);
            int nt = addRef(12, addUtf8(name), addUtf8(desc));
            return addRef(9, c, nt);
        }
    }

    /** Decodes modified UTF-8 (class-file strings). */
    static String decode(byte[] b, int p, int len) {
        StringBuilder sb = new StringBuilder(len);
        int end = p + len;
        while (p < end) {
            int c = b[p++] & 0xff;
            if (c < 0x80) {
                sb.append((char) c);
            } else if ((c & 0xe0) == 0xc0) {
                sb.append((char) (((c & 0x1f) << 6) | (b[p++] & 0x3f)));
            } else {
                int c2 = b[p++] & 0x3f, c3 = b[p++] & 0x3f;
                sb.append((char) (((c & 0x0f) << 12) | (c2 << 6) | c3));
            }
        }
        return sb.toString();
    }

    /**
     * Returns a copy of cls with every occurrence of the internal class name
     * from (as a whole name or inside descriptors, "Lfrom;") replaced by to,
     * in the constant pool's UTF-8 entries.
     */
    public static byte[] renameClass(byte[] cls, String from, String to) throws PatchException {
        if (cls.length < 10 || u4(cls, 0) != 0xCAFEBABE) throw new PatchException("not a class file");
        Pool pool = new Pool(cls);
        ByteArrayOutputStream out = new ByteArrayOutputStream(cls.length + 64);
        DataOutputStream o = new DataOutputStream(out);
        try {
            o.write(cls, 0, 10);
            for (int i = 1; i < pool.count; i++) {
                int p = pool.off[i];
                if (p == 0) continue; // the unused slot after a long or double
                int end = nextOffset(pool, i);
                if (cls[p] == 1) {
                    String v = pool.utf8(i);
                    String nv = v.equals(from) ? to : v.replace("L" + from + ";", "L" + to + ";");
                    if (!nv.equals(v)) {
                        o.writeByte(1);
                        o.writeUTF(nv);
                        continue;
                    }
                }
                o.write(cls, p, end - p);
            }
            o.write(cls, pool.end, cls.length - pool.end);
            o.flush();
        } catch (IOException e) {
            throw new PatchException(e.toString());
        }
        return out.toByteArray();
    }

    /** Offset of the entry after i (skipping the unused slot after a long/double). */
    private static int nextOffset(Pool pool, int i) {
        for (int k = i + 1; k < pool.count; k++) {
            if (pool.off[k] != 0) return pool.off[k];
        }
        return pool.end;
    }

    /** Returns true if the class has a method with this name and descriptor. */
    public static boolean hasMethod(byte[] cls, String name, String desc) throws PatchException {
        return findMethod(cls, new Pool(cls), name, desc) >= 0;
    }

    /** Names and descriptors of all methods, "name desc" each. */
    public static List<String> methods(byte[] cls) throws PatchException {
        Pool pool = new Pool(cls);
        List<String> out = new ArrayList<String>();
        Reader r = new Reader(cls, pool.end + 6);
        int ifs = r.u2(); r.p += 2 * ifs;
        int fields = r.u2();
        for (int i = 0; i < fields; i++) { r.p += 6; skipAttributes(r); }
        int methods = r.u2();
        for (int i = 0; i < methods; i++) {
            r.p += 2;
            String n = pool.utf8(r.u2()), d = pool.utf8(r.u2());
            out.add(n + " " + d);
            skipAttributes(r);
        }
        return out;
    }

    private static void skipAttributes(Reader r) {
        int n = r.u2();
        for (int i = 0; i < n; i++) { r.p += 2; int len = r.u4(); r.p += len; }
    }

    /** Offset of the method_info of name+desc, or -1. */
    private static int findMethod(byte[] b, Pool pool, String name, String desc) {
        Reader r = new Reader(b, pool.end + 6);
        int ifs = r.u2(); r.p += 2 * ifs; // interfaces
        int fields = r.u2();
        for (int i = 0; i < fields; i++) { r.p += 6; skipAttributes(r); }
        int methods = r.u2();
        for (int i = 0; i < methods; i++) {
            int start = r.p;
            r.p += 2;
            int ni = r.u2(), di = r.u2();
            if (name.equals(pool.utf8(ni)) && desc.equals(pool.utf8(di))) return start;
            skipAttributes(r);
        }
        return -1;
    }

    /**
     * Returns a copy of cls where method name+desc starts with the prologue.
     * Throws PatchException if the method is missing, abstract or native.
     */
    public static byte[] patch(byte[] cls, String name, String desc, Op... prologue) throws PatchException {
        if (cls.length < 10 || u4(cls, 0) != 0xCAFEBABE) throw new PatchException("not a class file");
        Pool pool = new Pool(cls);
        int m = findMethod(cls, pool, name, desc);
        if (m < 0) throw new PatchException("method " + name + desc + " not found");

        // Assemble the prologue, adding constant-pool entries.
        ByteArrayOutputStream code = new ByteArrayOutputStream();
        int depth = 0, maxDepth = 0, maxSlot = 0;
        for (Op op : prologue) {
            switch (op.kind) {
                case 0: emitVar(code, 0x19, 0x2a, op.slot); depth++; maxSlot = Math.max(maxSlot, op.slot + 1); break;
                case 1: emitVar(code, 0x15, 0x1a, op.slot); depth++; maxSlot = Math.max(maxSlot, op.slot + 1); break;
                case 2: emitVar(code, 0x3a, 0x4b, op.slot); depth--; maxSlot = Math.max(maxSlot, op.slot + 1); break;
                case 3: emitVar(code, 0x36, 0x3b, op.slot); depth--; maxSlot = Math.max(maxSlot, op.slot + 1); break;
                case 5: case 6: {
                    if (op.desc.equals("J") || op.desc.equals("D")) throw new PatchException("wide fields not supported");
                    int ref = pool.addFieldref(op.owner, op.name, op.desc);
                    code.write(op.kind == 5 ? 0xb4 : 0xb5); code.write(ref >> 8); code.write(ref);
                    depth += op.kind == 5 ? 0 : -2;
                    break;
                }
                default: {
                    int ref = pool.addMethodref(op.owner, op.name, op.desc);
                    code.write(0xb8); code.write(ref >> 8); code.write(ref);
                    depth += stackEffect(op.desc);
                }
            }
            if (depth < 0) throw new PatchException("prologue underflows the stack");
            maxDepth = Math.max(maxDepth, depth);
        }
        if (depth != 0) throw new PatchException("prologue leaves " + depth + " values on the stack");
        byte[] body = code.toByteArray();
        int pad = (4 - body.length % 4) % 4;
        byte[] pro = new byte[pad + body.length]; // leading zeros are nops
        System.arraycopy(body, 0, pro, pad, body.length);
        if (pool.next > 0xffff) throw new PatchException("constant pool full");
        final int n = pro.length;

        ByteArrayOutputStream out = new ByteArrayOutputStream(cls.length + 256);
        DataOutputStream o = new DataOutputStream(out);
        try {
            // Header and pool.
            o.write(cls, 0, 8);
            o.writeShort(pool.next);
            o.write(cls, 10, pool.end - 10);
            for (byte[] e : pool.added) o.write(e);
            // Up to the method's attributes.
            Reader r = new Reader(cls, m);
            int access = r.u2();
            if ((access & 0x0500) != 0) throw new PatchException("method " + name + desc + " is native or abstract");
            r.p += 4;
            int attrCountPos = r.p;
            o.write(cls, pool.end, attrCountPos - pool.end);
            int attrs = r.u2();
            o.writeShort(attrs);
            boolean found = false;
            for (int i = 0; i < attrs; i++) {
                int an = r.u2();
                int len = r.u4();
                int start = r.p;
                if ("Code".equals(pool.utf8(an))) {
                    byte[] nc = patchCode(cls, start, len, pool, pro, maxDepth, maxSlot);
                    o.writeShort(an);
                    o.writeInt(nc.length);
                    o.write(nc);
                    found = true;
                } else {
                    o.write(cls, start - 6, len + 6);
                }
                r.p = start + len;
            }
            if (!found) throw new PatchException("method " + name + desc + " has no code");
            o.write(cls, r.p, cls.length - r.p);
            o.flush();
        } catch (IOException e) {
            throw new PatchException(e.toString());
        }
        return out.toByteArray();
    }

    private static void emitVar(ByteArrayOutputStream c, int op, int shortBase, int slot) {
        if (slot <= 3) {
            c.write(shortBase + slot);
        } else if (slot <= 255) {
            c.write(op); c.write(slot);
        } else {
            c.write(0xc4); c.write(op); c.write(slot >> 8); c.write(slot);
        }
    }

    /** Stack effect of invokestatic with this descriptor. */
    static int stackEffect(String desc) {
        int i = 1, n = 0;
        while (desc.charAt(i) != ')') {
            char c = desc.charAt(i);
            if (c == 'J' || c == 'D') { n += 2; i++; }
            else if (c == 'L') { n++; i = desc.indexOf(';', i) + 1; }
            else if (c == '[') {
                while (desc.charAt(i) == '[') i++;
                if (desc.charAt(i) == 'L') i = desc.indexOf(';', i) + 1; else i++;
                n++;
            } else { n++; i++; }
        }
        char r = desc.charAt(i + 1);
        int ret = r == 'V' ? 0 : (r == 'J' || r == 'D') ? 2 : 1;
        return ret - n;
    }

    private static byte[] patchCode(byte[] b, int p, int len, Pool pool, byte[] pro, int proStack, int proLocals)
            throws IOException, PatchException {
        final int n = pro.length;
        Reader r = new Reader(b, p);
        int maxStack = r.u2(), maxLocals = r.u2();
        int codeLen = r.u4();
        if ((long) codeLen + n > 65535) throw new PatchException("method too large to patch");
        int codeStart = r.p;
        r.p += codeLen;
        ByteArrayOutputStream out = new ByteArrayOutputStream(len + n + 16);
        DataOutputStream o = new DataOutputStream(out);
        o.writeShort(Math.max(maxStack, proStack));
        o.writeShort(Math.max(maxLocals, proLocals));
        o.writeInt(codeLen + n);
        o.write(pro);
        o.write(b, codeStart, codeLen);
        int exc = r.u2();
        o.writeShort(exc);
        for (int i = 0; i < exc; i++) {
            o.writeShort(r.u2() + n); o.writeShort(r.u2() + n); o.writeShort(r.u2() + n); o.writeShort(r.u2());
        }
        int attrs = r.u2();
        List<byte[]> kept = new ArrayList<byte[]>();
        for (int i = 0; i < attrs; i++) {
            int an = r.u2();
            int alen = r.u4();
            int start = r.p;
            String aname = pool.utf8(an);
            byte[] nb = null;
            if ("StackMapTable".equals(aname)) {
                nb = shiftStackMap(b, start, n);
            } else if ("LineNumberTable".equals(aname)) {
                nb = new byte[alen];
                System.arraycopy(b, start, nb, 0, alen);
                int cnt = u2(nb, 0);
                for (int k = 0; k < cnt; k++) put2(nb, 2 + 4 * k, u2(nb, 2 + 4 * k) + n);
            } else if ("LocalVariableTable".equals(aname) || "LocalVariableTypeTable".equals(aname)) {
                nb = new byte[alen];
                System.arraycopy(b, start, nb, 0, alen);
                int cnt = u2(nb, 0);
                for (int k = 0; k < cnt; k++) {
                    int e = 2 + 10 * k;
                    int sp = u2(nb, e);
                    if (sp == 0) put2(nb, e + 2, u2(nb, e + 2) + n); // arguments: cover the prologue too
                    else put2(nb, e, sp + n);
                }
            } // other attributes (type annotations) would hold stale offsets: dropped
            if (nb != null) {
                ByteArrayOutputStream a = new ByteArrayOutputStream(nb.length + 6);
                DataOutputStream ao = new DataOutputStream(a);
                ao.writeShort(an); ao.writeInt(nb.length); ao.write(nb);
                kept.add(a.toByteArray());
            }
            r.p = start + alen;
        }
        o.writeShort(kept.size());
        for (byte[] a : kept) o.write(a);
        o.flush();
        return out.toByteArray();
    }

    private static void put2(byte[] b, int p, int v) {
        if (v > 0xffff) throw new IllegalStateException("offset overflow");
        b[p] = (byte) (v >> 8); b[p + 1] = (byte) v;
    }

    /** Rewrites a StackMapTable: the first frame's offset grows by n; uninitialized(offset) types shift. */
    private static byte[] shiftStackMap(byte[] b, int p, int n) throws IOException, PatchException {
        Reader r = new Reader(b, p);
        int count = r.u2();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        DataOutputStream o = new DataOutputStream(out);
        o.writeShort(count);
        for (int i = 0; i < count; i++) {
            int add = i == 0 ? n : 0;
            int t = r.u1();
            if (t <= 63) {
                int d = t + add;
                if (d <= 63) o.writeByte(d); else { o.writeByte(251); o.writeShort(d); }
            } else if (t <= 127) {
                int d = t - 64 + add;
                if (d <= 63) o.writeByte(64 + d); else { o.writeByte(247); o.writeShort(d); }
                copyType(r, o, n);
            } else if (t == 247) {
                o.writeByte(t); o.writeShort(r.u2() + add); copyType(r, o, n);
            } else if (t >= 248 && t <= 251) {
                o.writeByte(t); o.writeShort(r.u2() + add);
            } else if (t >= 252 && t <= 254) {
                o.writeByte(t); o.writeShort(r.u2() + add);
                for (int k = 0; k < t - 251; k++) copyType(r, o, n);
            } else if (t == 255) {
                o.writeByte(t); o.writeShort(r.u2() + add);
                int nl = r.u2(); o.writeShort(nl);
                for (int k = 0; k < nl; k++) copyType(r, o, n);
                int ns = r.u2(); o.writeShort(ns);
                for (int k = 0; k < ns; k++) copyType(r, o, n);
            } else {
                throw new PatchException("bad stack map frame type " + t);
            }
        }
        o.flush();
        return out.toByteArray();
    }

    private static void copyType(Reader r, DataOutputStream o, int n) throws IOException {
        int tag = r.u1();
        o.writeByte(tag);
        if (tag == 7) o.writeShort(r.u2());
        else if (tag == 8) o.writeShort(r.u2() + n); // uninitialized(offset of new)
    }
}
