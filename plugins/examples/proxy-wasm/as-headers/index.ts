// as-headers: a proxy-wasm (ABI 0.2.1) plugin in AssemblyScript.
// Request headers: sets the header named by the plugin configuration, e.g.
//   {"header":"x-as","value":"1"}
// Response headers: adds `x-as-plugin: as-headers`.
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  Context,
  FilterHeadersStatusValues,
  registerRootContext,
  RootContext,
  stream_context,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";
import { jsonString } from "../as-common/config";

class HeadersRoot extends RootContext {
  header: string = "x-as";
  value: string = "1";

  onConfigure(size: u32): bool {
    if (!super.onConfigure(size)) return false;
    const config = this.getConfiguration();
    const header = jsonString(config, "header");
    if (header != null) this.header = header.toLowerCase();
    const value = jsonString(config, "value");
    if (value != null) this.value = value;
    return this.header.length > 0;
  }

  createContext(context_id: u32): Context {
    return new Headers(context_id, this);
  }
}

class Headers extends Context {
  constructor(context_id: u32, root: HeadersRoot) {
    super(context_id, root);
  }

  onRequestHeaders(_count: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as HeadersRoot;
    // replace sets the header whether or not it was there (proxy_replace_header_map_value).
    stream_context.headers.request.replace(root.header, root.value);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(_count: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-as-plugin", "as-headers");
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => {
  return new HeadersRoot(context_id);
}, "as-headers");
