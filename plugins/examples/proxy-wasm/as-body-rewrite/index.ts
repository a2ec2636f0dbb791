// as-body-rewrite: a proxy-wasm (ABI 0.2.1) plugin in AssemblyScript that rewrites response
// bodies: every occurrence of `from` becomes `to`. Its headers callback removes
// `content-length` (Envoy's convention for a body whose length will change: the headers go
// before the body) and marks the response `x-as-plugin: as-body-rewrite`; its body callback gets
// the whole body (the host holds it up to the tenant's plugin_body_max_bytes) and replaces it.
// Configuration: {"from":"secret","to":"[redacted]"}
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  BufferTypeValues,
  Context,
  FilterDataStatusValues,
  FilterHeadersStatusValues,
  get_buffer_bytes,
  registerRootContext,
  RootContext,
  set_buffer_bytes,
  stream_context,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";
import { jsonString } from "../as-common/config";

class RewriteRoot extends RootContext {
  from: string = "";
  to: string = "";

  onConfigure(size: u32): bool {
    if (!super.onConfigure(size)) return false;
    const config = this.getConfiguration();
    const from = jsonString(config, "from");
    const to = jsonString(config, "to");
    if (from == null || from.length == 0 || to == null) return false;
    this.from = from;
    this.to = to;
    return true;
  }

  createContext(context_id: u32): Context {
    return new Rewrite(context_id, this);
  }
}

class Rewrite extends Context {
  constructor(context_id: u32, root: RewriteRoot) {
    super(context_id, root);
  }

  onResponseHeaders(_count: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    // The body's length will change: say so before the headers go.
    stream_context.headers.response.remove("content-length");
    stream_context.headers.response.add("x-as-plugin", "as-body-rewrite");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const root = this.root_context as RewriteRoot;
    const body = String.UTF8.decode(
      get_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, body_buffer_length as u32),
    );
    if (body.indexOf(root.from) < 0) return FilterDataStatusValues.Continue;
    const out = String.UTF8.encode(body.replaceAll(root.from, root.to));
    set_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, body_buffer_length as u32, out);
    return FilterDataStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => {
  return new RewriteRoot(context_id);
}, "as-body-rewrite");
