// as-shared-counter: a proxy-wasm (ABI 0.2.1) plugin in AssemblyScript using shared data with
// compare-and-swap, a timer tick and metrics.
// Every request increments the shared counter `as-shared-counter.requests` (get, then set with
// the CAS token, retried on CasMismatch), adds the request header `x-request-count: N` and
// increments the counter metric `as_shared_counter_requests_total`. Every tick (configured period)
// the root context records the shared value in the gauge `as_shared_counter_value`.
// Configuration (optional): {"tick_ms":1000}
export * from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";
import {
  Context,
  Counter,
  FilterHeadersStatusValues,
  get_shared_data,
  registerRootContext,
  RootContext,
  set_shared_data,
  set_tick_period_milliseconds,
  stream_context,
  WasmResultValues,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";
import { define_metric, record_metric } from "@gcoredev/proxy-wasm-sdk-as/assembly/runtime";
import { jsonU32 } from "../as-common/config";

const KEY = "as-shared-counter.requests";
const GAUGE: u32 = 1; // MetricType Gauge

function readCounter(): u64 {
  const got = get_shared_data(KEY);
  if (got.result != WasmResultValues.Ok || got.value == null) return 0;
  return U64.parseInt(String.UTF8.decode(got.value as ArrayBuffer));
}

// Returns the new value, or 0 when the CAS kept failing.
function incrementCounter(): u64 {
  for (let attempt = 0; attempt < 8; attempt++) {
    const got = get_shared_data(KEY);
    let value: u64 = 0;
    let cas: u32 = 0;
    if (got.result == WasmResultValues.Ok && got.value != null) {
      value = U64.parseInt(String.UTF8.decode(got.value as ArrayBuffer));
      cas = got.cas;
    }
    const next = value + 1;
    const r = set_shared_data(KEY, String.UTF8.encode(next.toString()), cas);
    if (r == WasmResultValues.Ok) return next;
    if (r != WasmResultValues.CasMismatch) return 0;
  }
  return 0;
}

class CounterRoot extends RootContext {
  requests: Counter | null = null;
  gauge: u32 = 0;

  onConfigure(size: u32): bool {
    if (!super.onConfigure(size)) return false;
    if (this.requests == null) {
      this.requests = new Counter("as_shared_counter_requests_total");
      const g = define_metric(GAUGE, "as_shared_counter_value");
      if (g.result != WasmResultValues.Ok) return false;
      this.gauge = g.metric_id;
    }
    set_tick_period_milliseconds(jsonU32(this.getConfiguration(), "tick_ms", 1000));
    return true;
  }

  onTick(): void {
    record_metric(this.gauge, readCounter());
  }

  createContext(context_id: u32): Context {
    return new Count(context_id, this);
  }
}

class Count extends Context {
  constructor(context_id: u32, root: CounterRoot) {
    super(context_id, root);
  }

  onRequestHeaders(_count: u32, _end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root_context as CounterRoot;
    const n = incrementCounter();
    (root.requests as Counter).increment(1);
    stream_context.headers.request.replace("x-request-count", n.toString());
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => {
  return new CounterRoot(context_id);
}, "as-shared-counter");
