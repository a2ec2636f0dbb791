// Fact-finding harness, not Wharf's host: runs a proxy-wasm module in Node's WebAssembly with a
// stub host that records every import call, to learn what a plugin does at start-up and per
// request (docs/proxy-wasm-imports.md). Header maps, properties and the configuration are served;
// everything else answers Ok or NotFound. Usage:
//   node scripts/proxy-wasm-trace.mjs MODULE.wasm ['{"plugin":"config"}'] [--json]
import { readFileSync } from "node:fs";
import { randomFillSync } from "node:crypto";

const [file, config = "", flag] = process.argv.slice(2);
const bytes = readFileSync(file);
const module = new WebAssembly.Module(bytes);
const OK = 0, NOT_FOUND = 1, BAD_ARGUMENT = 2, UNIMPLEMENTED = 12;
const EBADF = 8, ENOSYS = 52;

let inst, phase = "load";
const calls = []; // [phase, "module.name", detail, result]
const logs = [];
const mem = () => new DataView(inst.exports.memory.buffer);
const u8 = () => new Uint8Array(inst.exports.memory.buffer);
const str = (p, n) => Buffer.from(u8().subarray(p, p + n)).toString("utf8");
const alloc = (n) => {
  const f = inst.exports.proxy_on_memory_allocate || inst.exports.malloc;
  return f(n) >>> 0;
};
// Copies data into a guest allocation and stores its pointer and length at ptrPtr / lenPtr.
function give(data, ptrPtr, lenPtr) {
  const b = Buffer.from(data);
  const p = b.length ? alloc(b.length) : 0;
  if (b.length) u8().set(b, p);
  mem().setUint32(ptrPtr, p, true);
  mem().setUint32(lenPtr, b.length, true);
  return OK;
}
const maps = {
  0: [[":authority", "example.com"], [":path", "/v1/chat/completions"], [":method", "POST"],
      [":scheme", "http"], ["content-type", "application/json"], ["authorization", "Bearer t"], ["x-deny", ""]],
  1: [], 2: [[":status", "200"], ["content-type", "application/json"]], 3: [],
  6: [[":status", "200"]], 7: [],
};
function pairs(list) {
  const parts = [Buffer.alloc(4 + 8 * list.length)];
  parts[0].writeUInt32LE(list.length, 0);
  list.forEach(([k, v], i) => {
    parts[0].writeUInt32LE(Buffer.byteLength(k), 4 + 8 * i);
    parts[0].writeUInt32LE(Buffer.byteLength(v), 8 + 8 * i);
  });
  for (const [k, v] of list) parts.push(Buffer.from(k + "\0"), Buffer.from(v + "\0"));
  return Buffer.concat(parts);
}
const props = {
  "plugin_name": "trace", "plugin_root_id": "", "route_name": "r1", "cluster_name": "c1",
  "request\0path": "/v1/chat/completions", "request\0method": "POST", "request\0host": "example.com",
  "source\0address": "127.0.0.1:5555", "x_request_id": "req-1",
};
const shared = new Map(); let casSeq = 1;

const env = {
  proxy_log: (lvl, p, n) => { logs.push(`[${phase}] ${lvl}: ${str(p, n)}`); return OK; },
  proxy_get_log_level: (p) => { mem().setUint32(p, 2, true); return OK; },
  proxy_get_current_time_nanoseconds: (p) => { mem().setBigUint64(p, process.hrtime.bigint(), true); return OK; },
  proxy_set_tick_period_milliseconds: (ms) => ({ r: OK, d: `ms=${ms}` }),
  proxy_get_buffer_bytes: (t, start, len, pp, lp) => {
    if (t === 7) return { r: give(Buffer.from(config).subarray(start, start + len), pp, lp), d: "plugin configuration" };
    return { r: NOT_FOUND, d: `buffer ${t}` };
  },
  proxy_set_buffer_bytes: (t) => ({ r: OK, d: `buffer ${t}` }),
  proxy_get_header_map_pairs: (t, pp, lp) => ({ r: give(pairs(maps[t] || []), pp, lp), d: `map ${t}` }),
  proxy_set_header_map_pairs: (t) => ({ r: OK, d: `map ${t}` }),
  proxy_get_header_map_value: (t, kp, kn, pp, lp) => {
    const k = str(kp, kn), e = (maps[t] || []).find(([n]) => n === k);
    return { r: e ? give(e[1], pp, lp) : NOT_FOUND, d: `map ${t} ${k}` };
  },
  proxy_add_header_map_value: (t, kp, kn, vp, vn) => { (maps[t] ||= []).push([str(kp, kn), str(vp, vn)]); return { r: OK, d: `map ${t} ${str(kp, kn)}: ${str(vp, vn)}` }; },
  proxy_replace_header_map_value: (t, kp, kn, vp, vn) => {
    const k = str(kp, kn); maps[t] = (maps[t] || []).filter(([n]) => n !== k); maps[t].push([k, str(vp, vn)]);
    return { r: OK, d: `map ${t} ${k}: ${str(vp, vn)}` };
  },
  proxy_remove_header_map_value: (t, kp, kn) => { const k = str(kp, kn); maps[t] = (maps[t] || []).filter(([n]) => n !== k); return { r: OK, d: `map ${t} ${k}` }; },
  proxy_get_property: (pp, pn, vp, vl) => {
    const path = str(pp, pn).replace(/\0$/, "");
    return { r: path in props ? give(props[path], vp, vl) : NOT_FOUND, d: JSON.stringify(path) };
  },
  proxy_set_property: (pp, pn, vp, vn) => ({ r: OK, d: `${JSON.stringify(str(pp, pn))}=${JSON.stringify(str(vp, vn))}` }),
  proxy_get_shared_data: (kp, kn, vp, vl, cp) => {
    const k = str(kp, kn), e = shared.get(k);
    if (!e) return { r: NOT_FOUND, d: k };
    give(e.v, vp, vl); mem().setUint32(cp, e.cas, true); return { r: OK, d: k };
  },
  proxy_set_shared_data: (kp, kn, vp, vn, cas) => {
    const k = str(kp, kn), e = shared.get(k);
    if (cas && e && e.cas !== cas) return { r: 8, d: k };
    shared.set(k, { v: Buffer.from(u8().subarray(vp, vp + vn)), cas: casSeq++ }); return { r: OK, d: k };
  },
  proxy_define_metric: (t, np, nn, idp) => { mem().setUint32(idp, 7, true); return { r: OK, d: `type ${t} ${str(np, nn)}` }; },
  proxy_increment_metric: () => OK, proxy_record_metric: () => OK,
  proxy_get_metric: () => NOT_FOUND,
  proxy_http_call: (up, un, hp, hn, bp, bn, tp, tn, ms, tokp) => { mem().setUint32(tokp, 1, true); return { r: OK, d: `upstream ${str(up, un)} timeout ${ms}` }; },
  proxy_call_foreign_function: (np, nn) => ({ r: NOT_FOUND, d: str(np, nn) }),
  proxy_send_local_response: (code, dp, dn, bp, bn) => ({ r: OK, d: `${code} ${str(dp, dn)} ${JSON.stringify(str(bp, bn))}` }),
  proxy_set_effective_context: (id) => ({ r: OK, d: `${id}` }),
  proxy_continue_stream: (t) => ({ r: OK, d: `stream ${t}` }),
  proxy_close_stream: (t) => ({ r: OK, d: `stream ${t}` }),
  proxy_done: () => OK,
  proxy_redis_init: (np, nn) => ({ r: OK, d: str(np, nn) }),
  proxy_redis_call: (np, nn) => ({ r: OK, d: str(np, nn) }),
};
const wasi = {
  args_sizes_get: (a, b) => { mem().setUint32(a, 0, true); mem().setUint32(b, 0, true); return 0; },
  environ_sizes_get: (a, b) => { mem().setUint32(a, 0, true); mem().setUint32(b, 0, true); return 0; },
  args_get: () => 0, environ_get: () => 0,
  clock_time_get: (id, _prec, p) => { mem().setBigUint64(p, id === 0 ? BigInt(Date.now()) * 1000000n : process.hrtime.bigint(), true); return { r: 0, d: `clock ${id}` }; },
  random_get: (p, n) => { randomFillSync(u8(), p, n); return { r: 0, d: `${n} bytes` }; },
  fd_write: (fd, iovs, n, wp) => {
    let total = 0, text = "";
    for (let i = 0; i < n; i++) {
      const p = mem().getUint32(iovs + 8 * i, true), l = mem().getUint32(iovs + 8 * i + 4, true);
      text += str(p, l); total += l;
    }
    mem().setUint32(wp, total, true); logs.push(`[${phase}] fd ${fd}: ${text.trimEnd()}`);
    return { r: 0, d: `fd ${fd}` };
  },
  fd_prestat_get: (fd) => ({ r: EBADF, d: `fd ${fd}` }),
  fd_fdstat_get: (fd) => ({ r: EBADF, d: `fd ${fd}` }),
  sched_yield: () => 0,
  poll_oneoff: () => ENOSYS,
  proc_exit: (c) => { throw new Error(`proc_exit(${c})`); },
};
const imports = {};
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.kind !== "function") continue;
  const table = imp.module === "env" ? env : imp.module === "wasi_snapshot_preview1" ? wasi : {};
  const impl = table[imp.name];
  (imports[imp.module] ||= {})[imp.name] = (...args) => {
    let out = impl ? impl(...args) : (imp.module === "wasi_snapshot_preview1" ? ENOSYS : UNIMPLEMENTED);
    let detail = "";
    if (out && typeof out === "object") { detail = out.d; out = out.r; }
    calls.push([phase, `${imp.module === "env" ? "" : imp.module + "."}${imp.name}`, detail, out]);
    return out;
  };
}

const results = {};
function run(name, fn) {
  phase = name;
  const t = process.hrtime.bigint();
  try { results[name] = { ret: fn() }; } catch (e) { results[name] = { trap: String(e.message || e) }; }
  results[name].ms = Number(process.hrtime.bigint() - t) / 1e6;
}
inst = new WebAssembly.Instance(module, imports);
const x = inst.exports;
const entry = x._initialize ? "_initialize" : x._start ? "_start" : null;
if (entry) run(entry, () => x[entry]());
results.pages_after_init = x.memory.buffer.byteLength / 65536;
const cfg = Buffer.byteLength(config);
run("proxy_on_context_create(root)", () => x.proxy_on_context_create(1, 0));
run("proxy_on_vm_start", () => x.proxy_on_vm_start(1, 0));
run("proxy_on_configure", () => x.proxy_on_configure(1, cfg));
run("proxy_on_context_create(http)", () => x.proxy_on_context_create(2, 1));
run("proxy_on_request_headers", () => x.proxy_on_request_headers(2, maps[0].length, 0));
if (calls.some(([p, n]) => p === "proxy_on_request_headers" && n === "proxy_http_call"))
  run("proxy_on_http_call_response", () => x.proxy_on_http_call_response(1, 1, 1, 0, 0));
run("proxy_on_response_headers", () => x.proxy_on_response_headers(2, maps[2].length, 0));
run("proxy_on_done", () => x.proxy_on_done(2));
run("proxy_on_log", () => x.proxy_on_log(2));
run("proxy_on_delete", () => x.proxy_on_delete(2));
if (x.proxy_on_tick) run("proxy_on_tick", () => x.proxy_on_tick(1));
run("proxy_on_done(root)", () => x.proxy_on_done(1));
results.pages_at_end = x.memory.buffer.byteLength / 65536;

if (flag === "--json") { console.log(JSON.stringify({ results, calls, logs })); process.exit(0); }
for (const [name, r] of Object.entries(results)) {
  if (typeof r !== "object") { console.log(`${name}: ${r}`); continue; }
  console.log(`== ${name}: ${r.trap ? "TRAP " + r.trap : "returned " + r.ret} (${r.ms.toFixed(1)} ms)`);
  const seen = new Map();
  for (const [p, n, d, out] of calls) if (p === name) {
    const k = `${n}(${d}) -> ${out}`; seen.set(k, (seen.get(k) || 0) + 1);
  }
  for (const [k, c] of seen) console.log(`   ${c > 1 ? c + "x " : ""}${k}`);
}
console.log("-- log"); for (const l of logs.slice(0, 40)) console.log("   " + l.slice(0, 200));
