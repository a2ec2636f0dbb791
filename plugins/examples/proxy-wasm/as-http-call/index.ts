// as-http-call: an ext-auth style proxy-wasm (ABI 0.2.1) plugin in AssemblyScript.
// On request headers it dispatches proxy_http_call to the upstream (Envoy: cluster) named in the
// configuration, forwarding the request's Authorization header, and pauses the request. When the
// answer comes (proxy_on_http_call_response): a 2xx resumes the request (proxy_continue_stream);
// any other status is answered to the client (4xx as is, otherwise 403); no answer at all
// (timeout, upstream down) is a 503.
// Configuration: {"cluster":"auth","path":"/check","authority":"auth.local","timeout_ms":500}
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  BaseContext,
  Context,
  continue_request,
  FilterHeadersStatusValues,
  HeaderPair,
  makeHeaderPair,
  registerRootContext,
  RootContext,
  send_http_response,
  stream_context,
  WasmResultValues,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";
import { jsonString, jsonU32 } from "../as-common/config";

class AuthRoot extends RootContext {
  cluster: string = "";
  path: string = "/";
  authority: string = "";
  timeout_ms: u32 = 500;

  onConfigure(size: u32): bool {
    if (!super.onConfigure(size)) return false;
    const config = this.getConfiguration();
    const cluster = jsonString(config, "cluster");
    if (cluster == null || cluster.length == 0) return false; // refused: no upstream named
    this.cluster = cluster;
    const path = jsonString(config, "path");
    if (path != null) this.path = path;
    const authority = jsonString(config, "authority");
    this.authority = authority != null ? authority : cluster;
    this.timeout_ms = jsonU32(config, "timeout_ms", 500);
    return true;
  }

  createContext(context_id: u32): Context {
    return new Auth(context_id, this);
  }
}

function deny(status: u32, details: string, body: string): void {
  send_http_response(status, details, String.UTF8.encode(body),
    [makeHeaderPair("content-type", "text/plain")]);
}

// Runs as the request's context (the SDK sets the effective context before calling it).
function onAuthResponse(_origin: BaseContext, headers: u32, _body_size: usize, _trailers: u32): void {
  if (headers == 0) {
    deny(503, "as_http_call_failed", "auth service unavailable\n");
    return;
  }
  const status = stream_context.headers.http_callback.get(":status");
  if (status.length == 3 && status.charAt(0) == "2") {
    continue_request();
    return;
  }
  let code: u32 = 403;
  if (status.length == 3 && status.charAt(0) == "4") code = <u32>parseInt(status);
  deny(code, "as_http_call_denied", "denied by auth service (" + status + ")\n");
}

class Auth extends Context {
  constructor(context_id: u32, root: AuthRoot) {
    super(context_id, root);
  }

  onRequestHeaders(_count: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as AuthRoot;
    const headers: HeaderPair[] = [
      makeHeaderPair(":method", "GET"),
      makeHeaderPair(":path", root.path),
      makeHeaderPair(":authority", root.authority),
    ];
    const authorization = stream_context.headers.request.get("authorization");
    if (authorization.length > 0) headers.push(makeHeaderPair("authorization", authorization));
    const r = root.httpCall(root.cluster, headers, new ArrayBuffer(0), [], root.timeout_ms, this,
      onAuthResponse);
    if (r != WasmResultValues.Ok) {
      deny(503, "as_http_call_dispatch_failed", "auth service unavailable\n");
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.StopIteration; // resumed or answered by onAuthResponse
  }
}

registerRootContext((context_id: u32) => {
  return new AuthRoot(context_id);
}, "as-http-call");
