package dev.tether.intellij;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * JSON-RPC 2.0 over LSP framing ({@code Content-Length: N\r\n\r\n} + N bytes of UTF-8 JSON), as
 * {@code tether serve} speaks it on stdio. One reader thread completes the futures of requests,
 * calls notification listeners and answers the server's own requests (on that thread: a handler
 * that blocks for the user must hand off to the UI and return a future's result, see
 * {@link #onRequest}).
 */
public final class JsonRpcConnection implements AutoCloseable {
  /** Largest message accepted from the server (the backend's own limit). */
  public static final int MAX_MESSAGE_BYTES = 64 << 20;

  private final InputStream in;
  private final OutputStream out;
  private final Gson gson = new Gson();
  private final ReentrantLock writeLock = new ReentrantLock();
  private final AtomicLong nextId = new AtomicLong(1);
  private final Map<Long, CompletableFuture<JsonElement>> pending = new ConcurrentHashMap<>();
  private final Map<String, Consumer<JsonObject>> notificationHandlers = new ConcurrentHashMap<>();
  private final Map<String, Function<JsonObject, CompletableFuture<Object>>> requestHandlers =
      new ConcurrentHashMap<>();
  private final Thread reader;
  private volatile IOException closedBy;

  public JsonRpcConnection(InputStream in, OutputStream out) {
    this.in = in;
    this.out = out;
    this.reader = new Thread(this::readLoop, "tether-jsonrpc-reader");
    this.reader.setDaemon(true);
  }

  /** Starts reading; register handlers first. */
  public void start() {
    reader.start();
  }

  /** Registers the handler of a server notification (params may be an empty object). */
  public void onNotification(String method, Consumer<JsonObject> handler) {
    notificationHandlers.put(method, handler);
  }

  /** Registers the handler of a server request; its future's value is the result (null allowed). */
  public void onRequest(String method, Function<JsonObject, CompletableFuture<Object>> handler) {
    requestHandlers.put(method, handler);
  }

  /** Sends a request; the future fails with {@link RpcException} on an error reply. */
  public CompletableFuture<JsonElement> request(String method, Object params) {
    long id = nextId.getAndIncrement();
    CompletableFuture<JsonElement> f = new CompletableFuture<>();
    pending.put(id, f);
    JsonObject m = new JsonObject();
    m.addProperty("jsonrpc", "2.0");
    m.addProperty("id", id);
    m.addProperty("method", method);
    if (params != null) {
      m.add("params", gson.toJsonTree(params));
    }
    try {
      write(m);
    } catch (IOException e) {
      pending.remove(id);
      f.completeExceptionally(e);
    }
    return f;
  }

  /** Cancels a request sent by {@link #request} ($/cancelRequest); its future then fails with -32800. */
  public void cancel(long id) throws IOException {
    JsonObject p = new JsonObject();
    p.addProperty("id", id);
    notify("$/cancelRequest", p);
  }

  /** Sends a notification. */
  public void notify(String method, Object params) throws IOException {
    JsonObject m = new JsonObject();
    m.addProperty("jsonrpc", "2.0");
    m.addProperty("method", method);
    if (params != null) {
      m.add("params", gson.toJsonTree(params));
    }
    write(m);
  }

  private void write(JsonObject m) throws IOException {
    byte[] body = gson.toJson(m).getBytes(StandardCharsets.UTF_8);
    byte[] header = ("Content-Length: " + body.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII);
    writeLock.lock();
    try {
      if (closedBy != null) {
        throw new IOException("connection closed", closedBy);
      }
      out.write(header);
      out.write(body);
      out.flush();
    } finally {
      writeLock.unlock();
    }
  }

  /** Reads one framed message body; null at a clean end of stream. */
  static byte[] readMessage(InputStream in) throws IOException {
    int length = -1;
    ByteArrayOutputStream line = new ByteArrayOutputStream();
    int headerBytes = 0;
    for (;;) {
      int c = in.read();
      if (c < 0) {
        if (headerBytes == 0) {
          return null;
        }
        throw new EOFException("end of stream inside a header");
      }
      if (++headerBytes > 8192) {
        throw new IOException("header block over 8 KiB");
      }
      if (c != '\n') {
        line.write(c);
        continue;
      }
      String l = line.toString(StandardCharsets.US_ASCII).trim();
      line.reset();
      if (l.isEmpty()) {
        break;
      }
      int colon = l.indexOf(':');
      if (colon > 0 && l.substring(0, colon).trim().equalsIgnoreCase("Content-Length")) {
        try {
          length = Integer.parseInt(l.substring(colon + 1).trim());
        } catch (NumberFormatException e) {
          throw new IOException("bad Content-Length: " + l);
        }
      }
    }
    if (length <= 0 || length > MAX_MESSAGE_BYTES) {
      throw new IOException("missing or bad Content-Length: " + length);
    }
    byte[] body = in.readNBytes(length);
    if (body.length != length) {
      throw new EOFException("end of stream inside a message");
    }
    return body;
  }

  private void readLoop() {
    IOException cause = new EOFException("the backend closed the connection");
    try {
      byte[] body;
      while ((body = readMessage(in)) != null) {
        dispatch(JsonParser.parseString(new String(body, StandardCharsets.UTF_8)).getAsJsonObject());
      }
    } catch (IOException e) {
      cause = e;
    } catch (RuntimeException e) {
      cause = new IOException("bad message from the backend: " + e.getMessage(), e);
    } finally {
      closedBy = cause;
      for (CompletableFuture<JsonElement> f : pending.values()) {
        f.completeExceptionally(cause);
      }
      pending.clear();
    }
  }

  private void dispatch(JsonObject m) {
    boolean hasMethod = m.has("method");
    boolean hasId = m.has("id") && !m.get("id").isJsonNull();
    JsonObject params = m.has("params") && m.get("params").isJsonObject() ? m.getAsJsonObject("params") : new JsonObject();
    if (hasMethod && hasId) {
      answer(m.get("id"), m.get("method").getAsString(), params);
    } else if (hasMethod) {
      Consumer<JsonObject> h = notificationHandlers.get(m.get("method").getAsString());
      if (h != null) {
        try {
          h.accept(params);
        } catch (RuntimeException e) {
          // A listener's bug must not end the connection.
        }
      }
    } else if (hasId) {
      CompletableFuture<JsonElement> f = pending.remove(m.get("id").getAsLong());
      if (f == null) {
        return;
      }
      if (m.has("error")) {
        JsonObject e = m.getAsJsonObject("error");
        f.completeExceptionally(new RpcException(e.get("code").getAsInt(), e.get("message").getAsString(), e.get("data")));
      } else {
        f.complete(m.has("result") ? m.get("result") : JsonNull.INSTANCE);
      }
    }
  }

  private void answer(JsonElement id, String method, JsonObject params) {
    Function<JsonObject, CompletableFuture<Object>> h = requestHandlers.get(method);
    CompletableFuture<Object> result =
        h != null ? h.apply(params) : CompletableFuture.failedFuture(new RpcException(-32601, "method not found: " + method, null));
    result.whenComplete((v, err) -> {
      JsonObject r = new JsonObject();
      r.addProperty("jsonrpc", "2.0");
      r.add("id", id);
      if (err != null) {
        Throwable t = err.getCause() != null && !(err instanceof RpcException) ? err.getCause() : err;
        JsonObject e = new JsonObject();
        e.addProperty("code", t instanceof RpcException ? ((RpcException) t).code() : -32603);
        e.addProperty("message", String.valueOf(t.getMessage()));
        r.add("error", e);
      } else {
        r.add("result", v == null ? JsonNull.INSTANCE : gson.toJsonTree(v));
      }
      try {
        write(r);
      } catch (IOException ignored) {
        // The connection is gone; the reader reports it.
      }
    });
  }

  @Override
  public void close() throws IOException {
    try {
      out.close();
    } finally {
      in.close();
    }
  }
}
