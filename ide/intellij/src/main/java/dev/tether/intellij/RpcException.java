package dev.tether.intellij;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;

/** An error reply: the JSON-RPC code, the message for the user and Tether's data.category. */
public final class RpcException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final int code;
  private final transient JsonElement data;

  public RpcException(int code, String message, JsonElement data) {
    super(message);
    this.code = code;
    this.data = data;
  }

  public int code() {
    return code;
  }

  /** "user", "config", "environment" or "bug"; "" when the reply has none (framing errors). */
  public String category() {
    if (data != null && data.isJsonObject()) {
      JsonObject o = data.getAsJsonObject();
      if (o.has("category")) {
        return o.get("category").getAsString();
      }
    }
    return "";
  }

  public JsonElement data() {
    return data;
  }

  @Override
  public String toString() {
    return "RpcException(" + code + ", " + getMessage() + ")";
  }
}
