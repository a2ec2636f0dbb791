// as-local-response: a proxy-wasm (ABI 0.2.1) plugin in AssemblyScript.
// When the request carries an `x-deny` header (any value, even empty), answers 403 with a
// text body through proxy_send_local_response; otherwise the request goes on.
// Configuration (optional): {"body":"denied by as-local-response\n"}
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  Context,
  FilterHeadersStatusValues,
  makeHeaderPair,
  registerRootContext,
  RootContext,
  send_http_response,
  WasmResultValues,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";
import { proxy_get_header_map_value } from "@gcoredev/proxy-wasm-sdk-as/assembly/imports";
import { globalArrayBufferReference } from "@gcoredev/proxy-wasm-sdk-as/assembly/runtime";
import { jsonString } from "../as-common/config";

const REQUEST_HEADERS: u32 = 0;

class DenyRoot extends RootContext {
  body: string = "denied by as-local-response\n";

  onConfigure(size: u32): bool {
    if (!super.onConfigure(size)) return false;
    const body = jsonString(this.getConfiguration(), "body");
    if (body != null) this.body = body;
    return true;
  }

  createContext(context_id: u32): Context {
    return new Deny(context_id, this);
  }
}

// True when the request header is present; the SDK's get() cannot tell absent from empty.
function hasRequestHeader(name: string): bool {
  const key = String.UTF8.encode(name);
  const r = proxy_get_header_map_value(REQUEST_HEADERS, changetype<usize>(key), key.byteLength,
    globalArrayBufferReference.bufferPtr(), globalArrayBufferReference.sizePtr());
  if (r != WasmResultValues.Ok) return false;
  globalArrayBufferReference.toArrayBuffer(); // releases the value the host allocated
  return true;
}

class Deny extends Context {
  constructor(context_id: u32, root: DenyRoot) {
    super(context_id, root);
  }

  onRequestHeaders(_count: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    if (!hasRequestHeader("x-deny")) return FilterHeadersStatusValues.Continue;
    const root = this.root_context as DenyRoot;
    send_http_response(403, "as_local_response_denied", String.UTF8.encode(root.body),
      [makeHeaderPair("content-type", "text/plain")]);
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRootContext((context_id: u32) => {
  return new DenyRoot(context_id);
}, "as-local-response");
