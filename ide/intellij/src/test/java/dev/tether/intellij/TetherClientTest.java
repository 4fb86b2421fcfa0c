package dev.tether.intellij;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The IntelliJ client core against the real {@code tether serve}, with {@code tether-agent
 * sandbox} as the proxy machine and the sample app as the JVM the IDE starts. System properties:
 * tether.repo (the repository), tether.bin and tether.agentBin (default: REPO/bin/...).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class TetherClientTest {
  private final Path repo = Path.of(System.getProperty("tether.repo", "../.."));
  private final Path tether = Path.of(System.getProperty("tether.bin", repo.resolve("bin/tether").toString()));
  private final Path agent = Path.of(System.getProperty("tether.agentBin", repo.resolve("bin/tether-agent").toString()));
  private Path ws;
  private Path classes;
  private Process sandbox;
  private TetherClient client;
  private final List<String> logs = Collections.synchronizedList(new ArrayList<>());

  @BeforeAll
  void startSandbox() throws Exception {
    ws = Files.createTempDirectory("tether-intellij-");
    classes = ws.resolve(".tether-sandbox/classes");
    Files.createDirectories(classes);
    Process javac = new ProcessBuilder("javac", "--release", "11", "-d", classes.toString(),
        repo.resolve("examples/sample-app/Sample.java").toString()).inheritIO().start();
    assertEquals(0, javac.waitFor(), "javac Sample.java");
    Path log = ws.resolve(".tether-sandbox/agent.log");
    sandbox = new ProcessBuilder(agent.toString(), "sandbox", "--workspace", ws.toString(), "--listen", "127.0.0.1:0")
        .redirectErrorStream(true).redirectOutput(log.toFile()).start();
    long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (!Files.readString(log).contains("listening on")) {
      assertTrue(sandbox.isAlive(), () -> "tether-agent sandbox exited: " + read(log));
      assertTrue(System.nanoTime() < end, "the sandbox did not start within 60 s");
      Thread.sleep(50);
    }
    client = TetherClient.start(tether, ws, new TetherClient.Ui() {
      @Override
      public void log(int type, String message) {
        logs.add(type + " " + message);
      }
    }, Duration.ofSeconds(60));
  }

  @AfterAll
  void stop() throws Exception {
    if (client != null) {
      client.close();
      assertEquals(0, client.process().exitValue(), "tether serve exits 0 after shutdown/exit");
    }
    if (sandbox != null) {
      sandbox.destroy();
      if (!sandbox.waitFor(10, TimeUnit.SECONDS)) {
        sandbox.destroyForcibly();
      }
    }
  }

  private static String read(Path p) {
    try {
      return Files.readString(p);
    } catch (IOException e) {
      return e.toString();
    }
  }

  @Test
  void initialize() throws IOException {
    TetherClient.InitializeResult r = client.initializeResult();
    assertEquals("tether", r.serverInfo.name);
    assertTrue(r.protocolVersion.startsWith("1."));
    assertEquals(ws.toRealPath().toString(), Path.of(r.capabilities.workspace).toRealPath().toString());
    assertTrue(r.capabilities.methods.containsAll(List.of("runConfig/list", "interconnect/set", "launch/prepare", "launch/release")));
    assertTrue(r.capabilities.runConfigTypes.contains("java"));
    assertTrue(logs.stream().anyMatch(l -> l.contains("client=tether-intellij")), () -> String.join("\n", logs));
  }

  @Test
  void runConfigList() throws Exception {
    TetherClient.RunConfigList l = client.listConfigs();
    TetherClient.RunConfig sample = l.configs.stream().filter(c -> c.name.equals("sample")).findFirst().orElseThrow();
    assertEquals("java", sample.type);
    assertTrue(sample.interconnect.enabled);
    assertEquals("sandbox", sample.interconnect.proxy);
    assertNotNull(l.revision);
    assertEquals("sandbox", client.listProxies().proxies.get(0).name);
  }

  @Test
  void interconnectSetChangesTheWorkspaceFile() throws Exception {
    Path yaml = ws.resolve("tether.yaml");
    String before = Files.readString(yaml);
    String rev = client.listConfigs().revision;
    String off = client.setInterconnect("sample", false, null, rev);
    assertNotEquals(rev, off);
    assertTrue(Files.readString(yaml).contains("enabled: false"), () -> read(yaml));
    assertNotEquals(before, Files.readString(yaml));
    RpcException conflict = assertThrows(RpcException.class, () -> client.setInterconnect("sample", true, null, rev));
    assertEquals(1002, conflict.code());
    client.setInterconnect("sample", true, "sandbox", off);
    assertTrue(Files.readString(yaml).contains("enabled: true"));
    RpcException missing = assertThrows(RpcException.class, () -> client.setInterconnect("nope", true, null, null));
    assertEquals(1001, missing.code());
    assertEquals("user", missing.category());
  }

  @Test
  void prepareGivesVmArgsAndEnvThatReachThePrivateNetwork() throws Exception {
    List<String> kinds = Collections.synchronizedList(new ArrayList<>());
    TetherClient.Prepared p = client.prepare("sample", false, (JsonObject v) -> kinds.add(v.get("kind").getAsString()));
    try {
      assertTrue(p.sessionId.startsWith("s-"));
      assertTrue(p.vmArgs.stream().anyMatch(a -> a.startsWith("-javaagent:")), p.vmArgs::toString);
      assertNotNull(p.env.get("TETHER_AGENT_CONTROL"));
      assertNotNull(p.env.get("TETHER_AGENT_TOKEN"));
      assertEquals("begin", kinds.get(0));
      assertEquals("end", kinds.get(kinds.size() - 1));
      assertTrue(client.status().stream().anyMatch(t -> p.sessionId.equals(t.sessionId) && "connected".equals(t.state)));

      // What the plugin's RunConfigurationExtension does: vmArgs first, env added.
      List<String> cmd = new ArrayList<>();
      cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
      cmd.addAll(p.vmArgs);
      cmd.addAll(List.of("-cp", classes.toString(), "Sample"));
      ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
      pb.environment().putAll(p.env);
      Process java = pb.start();
      String out = new String(java.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertEquals(0, java.waitFor(), out);
      assertTrue(out.contains("OK: the private network is reachable"), out);
    } finally {
      client.release(p.sessionId);
    }
    assertTrue(client.status().stream().noneMatch(t -> p.sessionId.equals(t.sessionId)));
    RpcException bad = assertThrows(RpcException.class, () -> client.release("l-nope"));
    assertEquals(1001, bad.code());
  }

  @Test
  void prepareWithDebugAddsJdwp() throws Exception {
    TetherClient.Prepared p = client.prepare("sample", true, null);
    try {
      assertTrue(p.debugAddress.matches("127\\.0\\.0\\.1:\\d+"), p.debugAddress);
      assertTrue(p.vmArgs.stream().anyMatch(a -> a.startsWith("-agentlib:jdwp=") && a.contains(p.debugAddress)));
    } finally {
      client.release(p.sessionId);
    }
  }

  @Test
  void framing() throws Exception {
    byte[] two = "Content-Length: 2\r\nContent-Type: x\r\n\r\n{}content-length: 3\r\n\r\n[1]".getBytes(StandardCharsets.US_ASCII);
    ByteArrayInputStream in = new ByteArrayInputStream(two);
    assertEquals("{}", new String(JsonRpcConnection.readMessage(in), StandardCharsets.UTF_8));
    assertEquals("[1]", new String(JsonRpcConnection.readMessage(in), StandardCharsets.UTF_8));
    assertEquals(null, JsonRpcConnection.readMessage(in));
    assertThrows(IOException.class, () -> JsonRpcConnection.readMessage(new ByteArrayInputStream("X: 1\r\n\r\n".getBytes(StandardCharsets.US_ASCII))));
    assertThrows(IOException.class, () -> JsonRpcConnection.readMessage(new ByteArrayInputStream("Content-Length: 5\r\n\r\n{}".getBytes(StandardCharsets.US_ASCII))));
  }
}
