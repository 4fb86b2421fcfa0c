package dev.tether.intellij;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * The core of the IntelliJ plugin: runs {@code tether serve} on stdio for a project and calls it.
 * No IntelliJ Platform classes: the plugin wraps it (see docs/intellij.md) and supplies the UI
 * through {@link Ui}. Methods block up to the timeout given at start; call them off the EDT.
 */
public final class TetherClient implements AutoCloseable {
  /** What the backend asks of the IDE; the defaults refuse (no UI). */
  public interface Ui {
    /** window/logMessage (1 error … 4 log) and the backend's stderr (type 4). */
    default void log(int type, String message) {}

    /** window/showMessageRequest: the chosen action title, or null. */
    default CompletableFuture<String> showMessageRequest(int type, String message, List<String> actions) {
      return CompletableFuture.completedFuture(null);
    }

    /** window/showInputRequest (password, passphrase): the typed value, or null when cancelled. */
    default CompletableFuture<String> showInputRequest(String message, boolean secret) {
      return CompletableFuture.completedFuture(null);
    }

    /** interconnect/status notification: a tunnel changed state (reconnecting, connected). */
    default void tunnelStatus(TunnelStatus s) {}

    /** interconnect/connection notification: the connection log. */
    default void connection(JsonObject record) {}

    /** launch/state and launch/output notifications. */
    default void launchState(JsonObject state) {}

    default void launchOutput(String launchId, String stream, String text) {}
  }

  /** A run configuration as runConfig/list gives it (the fields the plugin shows). */
  public static final class RunConfig {
    public String name;
    public String type;
    public Interconnect interconnect;
    public JsonObject java;
  }

  public static final class Interconnect {
    public boolean enabled;
    public String proxy;
  }

  public static final class RunConfigList {
    public List<RunConfig> configs = new ArrayList<>();
    public String revision;
  }

  public static final class Proxy {
    public String name;
  }

  public static final class ProxyList {
    public List<Proxy> proxies = new ArrayList<>();
    public String revision;
  }

  /** launch/prepare: what to add to the JVM the IDE starts (both vmArgs and env for java). */
  public static final class Prepared {
    public String sessionId;
    public List<String> vmArgs = new ArrayList<>();
    public Map<String, String> env = new LinkedHashMap<>();
    public String debugAddress;
  }

  public static final class TunnelStatus {
    public String sessionId;
    public String proxy;
    public String state;
    public String since;
    public String error;
  }

  public static final class InitializeResult {
    public ServerInfo serverInfo;
    public String protocolVersion;
    public Capabilities capabilities;
  }

  public static final class ServerInfo {
    public String name;
    public String version;
  }

  public static final class Capabilities {
    public String workspace;
    public List<String> methods = new ArrayList<>();
    public List<String> runConfigTypes = new ArrayList<>();
    public List<String> proxyKinds = new ArrayList<>();
  }

  private static final Gson GSON = new Gson();
  private static final AtomicLong TOKENS = new AtomicLong();

  private final Process process;
  private final JsonRpcConnection rpc;
  private final Duration timeout;
  private final Map<String, Consumer<JsonObject>> progress = new ConcurrentHashMap<>();
  private InitializeResult initializeResult;

  private TetherClient(Process process, Duration timeout, Ui ui) {
    this.process = process;
    this.timeout = timeout;
    this.rpc = new JsonRpcConnection(process.getInputStream(), process.getOutputStream());
    rpc.onNotification("window/logMessage", p -> ui.log(p.get("type").getAsInt(), p.get("message").getAsString()));
    rpc.onNotification("interconnect/status", p -> ui.tunnelStatus(GSON.fromJson(p, TunnelStatus.class)));
    rpc.onNotification("interconnect/connection", ui::connection);
    rpc.onNotification("launch/state", ui::launchState);
    rpc.onNotification("launch/output", p -> ui.launchOutput(
        p.get("launchId").getAsString(), p.get("stream").getAsString(), p.get("text").getAsString()));
    rpc.onNotification("$/progress", p -> {
      Consumer<JsonObject> c = progress.get(p.get("token").getAsString());
      if (c != null && p.has("value")) {
        c.accept(p.getAsJsonObject("value"));
      }
    });
    rpc.onRequest("window/showMessageRequest", p -> {
      List<String> actions = new ArrayList<>();
      if (p.has("actions") && p.get("actions").isJsonArray()) {
        for (JsonElement a : p.getAsJsonArray("actions")) {
          actions.add(a.getAsJsonObject().get("title").getAsString());
        }
      }
      return ui.showMessageRequest(p.get("type").getAsInt(), p.get("message").getAsString(), actions)
          .thenApply(t -> t == null ? null : Map.of("title", t));
    });
    rpc.onRequest("window/showInputRequest", p -> ui.showInputRequest(
            p.get("message").getAsString(), p.has("secret") && p.get("secret").getAsBoolean())
        .thenApply(v -> v == null ? null : Map.of("value", v)));
    Thread err = new Thread(() -> {
      try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getErrorStream(), StandardCharsets.UTF_8))) {
        String line;
        while ((line = r.readLine()) != null) {
          ui.log(4, line);
        }
      } catch (IOException ignored) {
        // The process ended.
      }
    }, "tether-serve-stderr");
    err.setDaemon(true);
    err.start();
    rpc.start();
  }

  /** Starts {@code tether serve --workspace DIR} and initializes it. */
  public static TetherClient start(Path tether, Path workspace, Ui ui, Duration timeout) throws IOException {
    ProcessBuilder pb = new ProcessBuilder(tether.toString(), "serve", "--workspace", workspace.toString(),
        "--ppid", Long.toString(ProcessHandle.current().pid()));
    Process p = pb.start();
    TetherClient c = new TetherClient(p, timeout, ui == null ? new Ui() {} : ui);
    try {
      Map<String, Object> params = new LinkedHashMap<>();
      params.put("processId", ProcessHandle.current().pid());
      params.put("rootUri", workspace.toUri().toString());
      params.put("clientInfo", Map.of("name", "tether-intellij", "version", "0.1.0"));
      c.initializeResult = GSON.fromJson(c.call("initialize", params), InitializeResult.class);
      if (!c.initializeResult.protocolVersion.startsWith("1.")) {
        throw new IOException("tether speaks protocol " + c.initializeResult.protocolVersion + "; this plugin needs 1.x");
      }
      c.rpc.notify("initialized", Map.of());
    } catch (IOException | RuntimeException e) {
      p.destroyForcibly();
      throw e;
    }
    return c;
  }

  public InitializeResult initializeResult() {
    return initializeResult;
  }

  /** Calls a method and waits for its result; an error reply is thrown as {@link RpcException}. */
  public JsonElement call(String method, Object params) throws IOException {
    CompletableFuture<JsonElement> f = rpc.request(method, params);
    try {
      return f.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    } catch (ExecutionException e) {
      Throwable c = e.getCause();
      if (c instanceof RpcException) {
        throw new RpcException(((RpcException) c).code(), c.getMessage(), ((RpcException) c).data());
      }
      if (c instanceof IOException) {
        throw new IOException(method + ": " + c.getMessage(), c);
      }
      throw new IOException(method + ": " + c, c);
    } catch (TimeoutException e) {
      throw new IOException(method + ": no answer within " + timeout);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException(method + ": interrupted");
    }
  }

  /** Calls a method with a workDoneToken; onProgress gets each $/progress value (begin, report…, end). */
  public JsonElement callWithProgress(String method, Map<String, Object> params, Consumer<JsonObject> onProgress) throws IOException {
    String token = "intellij-" + TOKENS.incrementAndGet();
    progress.put(token, onProgress);
    try {
      Map<String, Object> p = new LinkedHashMap<>(params);
      p.put("workDoneToken", token);
      return call(method, p);
    } finally {
      progress.remove(token);
    }
  }

  public RunConfigList listConfigs() throws IOException {
    return GSON.fromJson(call("runConfig/list", Map.of()), RunConfigList.class);
  }

  public ProxyList listProxies() throws IOException {
    return GSON.fromJson(call("proxy/list", Map.of()), ProxyList.class);
  }

  /** The interconnect toggle (saved in tether.yaml); proxy and revision may be null. Returns the new revision. */
  public String setInterconnect(String config, boolean enabled, String proxy, String revision) throws IOException {
    Map<String, Object> p = new LinkedHashMap<>();
    p.put("config", config);
    p.put("enabled", enabled);
    if (proxy != null) {
      p.put("proxy", proxy);
    }
    if (revision != null) {
      p.put("revision", revision);
    }
    return call("interconnect/set", p).getAsJsonObject().get("revision").getAsString();
  }

  /** launch/prepare: opens the interconnect for a JVM the IDE starts itself. */
  public Prepared prepare(String config, boolean debug, Consumer<JsonObject> onProgress) throws IOException {
    Map<String, Object> p = new LinkedHashMap<>();
    p.put("config", config);
    p.put("debug", debug);
    JsonElement r = onProgress == null ? call("launch/prepare", p) : callWithProgress("launch/prepare", p, onProgress);
    return GSON.fromJson(r, Prepared.class);
  }

  public void release(String sessionId) throws IOException {
    call("launch/release", Map.of("sessionId", sessionId));
  }

  public List<TunnelStatus> status() throws IOException {
    JsonObject r = call("interconnect/status", Map.of()).getAsJsonObject();
    List<TunnelStatus> out = new ArrayList<>();
    for (JsonElement t : r.getAsJsonArray("tunnels")) {
      out.add(GSON.fromJson(t, TunnelStatus.class));
    }
    return out;
  }

  /** The backend's process (for tests and the plugin's "restart" action). */
  public Process process() {
    return process;
  }

  /** shutdown, exit, then waits for the backend; returns its exit code (killed after the timeout). */
  @Override
  public void close() throws IOException {
    try {
      if (process.isAlive()) {
        call("shutdown", null);
        rpc.notify("exit", null);
      }
      if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        process.destroyForcibly();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
    } catch (IOException | RuntimeException e) {
      process.destroyForcibly();
    } finally {
      rpc.close();
    }
  }
}
