//! proxy-wasm isolation from the attacker's side: raw-ABI modules written here in WAT, uploaded
//! through the admin API and attached as any tenant would, each doing one hostile thing (a trap,
//! an endless loop, memory growth past the quota, wild pointers, a 100,000-pair header map, a
//! reach for another request's context, an allocator answering garbage, a VM that cannot be
//! configured, `proc_exit`). Each fails only its own request (or gets an error status and goes
//! on), while another tenant's requests, with and without a plugin of the same bytes, keep being
//! served by a VM that never restarts. And two tenants running the same module bytes get a VM
//! each whose state never shows the other's requests.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use wharf_plugins::test_support::binary;

use super::proxy_wasm_serve::{metric_sum, route_to, upload_and_attach};
use crate::support::api::{setup, Api, Body, OP};
use crate::support::*;

/// A raw proxy-wasm module under construction: the strings its functions use are laid out in
/// memory from 1024 ([`Wat::s`]). Every module gets the ABI's version export, a no-op context
/// create, `proxy_on_vm_start`, an allocator answering a scratch buffer at 8192 (unless its own
/// functions define `proxy_on_memory_allocate`), and helpers: `$report(name, len, value)` adds a
/// request header with a number's decimal digits, `$has(name, len)` tells whether the request
/// has a header. Host calls that return data use 700 (pointer) and 704 (size).
pub(crate) struct Wat {
    data: RefCell<String>,
    next: RefCell<usize>,
    imports: RefCell<String>,
}

impl Wat {
    pub(crate) fn new() -> Wat {
        Wat {
            data: RefCell::new(String::new()),
            next: RefCell::new(1024),
            imports: RefCell::new(String::new()),
        }
    }

    /// One more import (a WAT `(import …)` line) for the module's functions.
    pub(crate) fn import(&self, line: &str) {
        self.imports.borrow_mut().push_str(line);
        self.imports.borrow_mut().push('\n');
    }

    /// `text` placed in the module's memory, as the two operands `ptr len`.
    pub(crate) fn s(&self, text: &str) -> String {
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        let at = *self.next.borrow();
        *self.next.borrow_mut() = at + text.len() + 1;
        assert!(at + text.len() < 8192, "strings overlap the scratch buffer");
        self.data
            .borrow_mut()
            .push_str(&format!("(data (i32.const {at}) \"{text}\")\n"));
        format!("(i32.const {at}) (i32.const {})", text.len())
    }

    /// The module with `funcs` (exports and globals) and `pages` of memory.
    pub(crate) fn module(&self, pages: u32, funcs: &str) -> Vec<u8> {
        let alloc = if funcs.contains("\"proxy_on_memory_allocate\"") {
            ""
        } else {
            r#"(func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
                 (select (i32.const 8192) (i32.const 0) (i32.le_u (local.get $n) (i32.const 32768))))"#
        };
        let wat = format!(
            r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $setpairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
  (import "env" "proxy_set_property" (func $setprop (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  {imports}
  (memory (export "memory") {pages})
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  {alloc}
  (func $report (param $k i32) (param $kl i32) (param $v i32)
    (local $p i32)
    (local.set $p (i32.const 600))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $digit (local.get $v)))
    (drop (call $add (i32.const 0) (local.get $k) (local.get $kl)
      (local.get $p) (i32.sub (i32.const 600) (local.get $p)))))
  (func $has (param i32 i32) (result i32)
    (i32.eqz (call $get (i32.const 0) (local.get 0) (local.get 1) (i32.const 700) (i32.const 704))))
  {funcs}
  {data}
)"#,
            data = self.data.borrow(),
            imports = self.imports.borrow()
        );
        binary(&wat)
    }
}

/// Counts its requests in a global (`x-count`), echoes its plugin configuration (`x-config`)
/// and the tenant it runs for (`x-tenant`, a property); traps on `x-trap`, calls WASI
/// `proc_exit(3)` on `x-exit`.
fn counter() -> Vec<u8> {
    let w = Wat::new();
    let funcs = format!(
        r#"(global $count (mut i32) (i32.const 0))
  (global $cfg_len (mut i32) (i32.const 0))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 1024)) (then (return (i32.const 0))))
    (if (local.get $size) (then
      (drop (call $buf (i32.const 7) (i32.const 0) (local.get $size) (i32.const 700) (i32.const 704)))
      (memory.copy (i32.const 16384) (i32.load (i32.const 700)) (i32.load (i32.const 704)))
      (global.set $cfg_len (i32.load (i32.const 704)))))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (if (call $has {trap}) (then unreachable))
    (if (call $has {exit}) (then (call $exit (i32.const 3))))
    (call $report {count} (global.get $count))
    (drop (call $add (i32.const 0) {config} (i32.const 16384) (global.get $cfg_len)))
    (if (i32.eqz (call $prop {tenant_prop} (i32.const 700) (i32.const 704))) (then
      (drop (call $add (i32.const 0) {tenant} (i32.load (i32.const 700)) (i32.load (i32.const 704))))))
    (i32.const 0))"#,
        trap = w.s("x-trap"),
        exit = w.s("x-exit"),
        count = w.s("x-count"),
        config = w.s("x-config"),
        tenant_prop = w.s("wharf.tenant"),
        tenant = w.s("x-tenant"),
    );
    w.module(1, &funcs)
}

/// Spins forever in its request callback.
fn endless_loop() -> Vec<u8> {
    Wat::new().module(
        1,
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (loop $spin (br $spin))
    (i32.const 0))"#,
    )
}

/// Grows its memory a MiB at a time until refused, then traps (as an allocator out of memory).
fn memory_hog() -> Vec<u8> {
    Wat::new().module(
        1,
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (block $refused (loop $more
      (br_if $refused (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
      (br $more)))
    unreachable)"#,
    )
}

/// Passes pointers and lengths outside its memory to the host functions and reports each
/// status in a header; then carries on.
fn wild_pointers() -> Vec<u8> {
    let w = Wat::new();
    let path = w.s(":path");
    let funcs = format!(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $report {log} (call $log (i32.const 2) (i32.const 0xFFFFFFF0) (i32.const 100)))
    (call $report {len} (call $log (i32.const 2) (i32.const 1024) (i32.const -1)))
    (call $report {key} (call $get (i32.const 0) (i32.const 65530) (i32.const 100) (i32.const 700) (i32.const 704)))
    (call $report {ret} (call $get (i32.const 0) {path} (i32.const 0xFFFFFFF0) (i32.const 704)))
    (call $report {pairs} (call $pairs (i32.const 0) (i32.const 65534) (i32.const 700)))
    (call $report {set} (call $setpairs (i32.const 0) (i32.const 60000) (i32.const 10000)))
    (call $report {reply} (call $reply (i32.const 403) (i32.const 0) (i32.const 0)
      (i32.const 0xFFFFFF00) (i32.const 1000) (i32.const 0) (i32.const 0) (i32.const -1)))
    (call $report {prop} (call $prop (i32.const -1) (i32.const 1) (i32.const 700) (i32.const 704)))
    (call $report {time} (call $now (i32.const 65532)))
    (call $report {fd} (call $fd_write (i32.const 1) (i32.const 65532) (i32.const 1) (i32.const 700)))
    (i32.const 0))"#,
        log = w.s("x-oob-log"),
        len = w.s("x-oob-len"),
        key = w.s("x-oob-key"),
        ret = w.s("x-oob-ret"),
        pairs = w.s("x-oob-pairs"),
        set = w.s("x-oob-set"),
        reply = w.s("x-oob-reply"),
        prop = w.s("x-oob-prop"),
        time = w.s("x-oob-time"),
        fd = w.s("x-oob-fd"),
    );
    w.module(1, &funcs)
}

/// Builds a real serialized header map of 100,000 pairs (`k: v`, 1.2 MB) and hands it to
/// `proxy_set_header_map_pairs`; reports the status and the map's size.
fn huge_map() -> Vec<u8> {
    let w = Wat::new();
    let funcs = format!(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $p i32)
    (i32.store (i32.const 65536) (i32.const 100000))
    (local.set $p (i32.const 65540))
    (loop $sizes
      (i32.store (local.get $p) (i32.const 1))
      (i32.store offset=4 (local.get $p) (i32.const 1))
      (local.set $p (i32.add (local.get $p) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $sizes (i32.lt_u (local.get $i) (i32.const 100000))))
    (local.set $i (i32.const 0))
    (loop $bytes
      (i32.store (local.get $p) (i32.const 0x0076006b)) ;; "k\0v\0"
      (local.set $p (i32.add (local.get $p) (i32.const 4)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $bytes (i32.lt_u (local.get $i) (i32.const 100000))))
    (call $report {status} (call $setpairs (i32.const 0) (i32.const 65536)
      (i32.sub (local.get $p) (i32.const 65536))))
    (call $report {size} (i32.sub (local.get $p) (i32.const 65536)))
    (i32.const 0))"#,
        status = w.s("x-set-pairs"),
        size = w.s("x-map-bytes"),
    );
    w.module(20, &funcs)
}

/// Adds 5,000 values to the request's header map, one call each.
fn header_flood() -> Vec<u8> {
    let w = Wat::new();
    let funcs = format!(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (loop $more
      (drop (call $add (i32.const 0) {name} {value}))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 5000))))
    (i32.const 0))"#,
        name = w.s("x-flood"),
        value = w.s("v"),
    );
    w.module(1, &funcs)
}

/// Makes the previous request's context effective (and one that does not exist), then reads the
/// request's `x-secret` and copies it to `x-leaked`; reports each status. It has a response
/// phase, so a request's context stays live while its upstream answers.
fn context_hopper() -> Vec<u8> {
    let w = Wat::new();
    let secret = w.s("x-secret");
    let funcs = format!(
        r#"(func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
    (call $report {context} (local.get $id))
    (call $report {prev} (call $eff (i32.sub (local.get $id) (i32.const 1))))
    (call $report {far} (call $eff (i32.add (local.get $id) (i32.const 1000))))
    (drop (call $eff (i32.sub (local.get $id) (i32.const 1))))
    (call $report {status} (call $get (i32.const 0) {secret} (i32.const 700) (i32.const 704)))
    (if (i32.eqz (call $get (i32.const 0) {secret} (i32.const 700) (i32.const 704))) (then
      (drop (call $add (i32.const 0) {leaked} (i32.load (i32.const 700)) (i32.load (i32.const 704))))))
    (drop (call $eff (local.get $id)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))"#,
        context = w.s("x-context"),
        prev = w.s("x-eff-prev"),
        far = w.s("x-eff-far"),
        status = w.s("x-secret-status"),
        leaked = w.s("x-leaked"),
    );
    w.module(1, &funcs)
}

/// An allocator answering garbage (far outside memory, null, straddling the end) while the host
/// returns header data; then a sane one. The last two bytes of memory are a canary.
fn garbage_allocator() -> Vec<u8> {
    let w = Wat::new();
    let path = w.s(":path");
    let funcs = format!(
        r#"(global $ret (mut i32) (i32.const 0xFFFFFFF0))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (global.get $ret))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $ret (i32.const 0xFFFFFFF0))
    (call $report {high} (call $get (i32.const 0) {path} (i32.const 700) (i32.const 704)))
    (call $report {pairs} (call $pairs (i32.const 0) (i32.const 700) (i32.const 704)))
    (call $report {prop} (call $prop {req_path} (i32.const 700) (i32.const 704)))
    (global.set $ret (i32.const 0))
    (call $report {zero} (call $get (i32.const 0) {path} (i32.const 700) (i32.const 704)))
    (global.set $ret (i32.const 65534))
    (call $report {edge} (call $get (i32.const 0) {path} (i32.const 700) (i32.const 704)))
    (call $report {canary} (i32.load16_u (i32.const 65534)))
    (global.set $ret (i32.const 8192))
    (call $report {ok} (call $get (i32.const 0) {path} (i32.const 700) (i32.const 704)))
    (drop (call $add (i32.const 0) {seen} (i32.load (i32.const 700)) (i32.load (i32.const 704))))
    (i32.const 0))"#,
        high = w.s("x-alloc-high"),
        pairs = w.s("x-alloc-pairs"),
        prop = w.s("x-alloc-prop"),
        req_path = w.s("request.path"),
        zero = w.s("x-alloc-zero"),
        edge = w.s("x-alloc-edge"),
        canary = w.s("x-canary"),
        ok = w.s("x-alloc-ok"),
        seen = w.s("x-path-seen"),
    );
    w.module(1, &funcs)
}

/// An allocator that traps (`x-alloc-trap`) or spins (`x-alloc-spin`) while the host gives the
/// module `:path`. The callback makes no wasm call after it: it returns at once.
fn failing_allocator() -> Vec<u8> {
    let w = Wat::new();
    let funcs = format!(
        r#"(global $mode (mut i32) (i32.const 0))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32)
    (if (i32.eq (global.get $mode) (i32.const 1)) (then unreachable))
    (if (i32.eq (global.get $mode) (i32.const 2)) (then (loop $spin (br $spin))))
    (i32.const 8192))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $mode (i32.const 0))
    (if (call $has {trap}) (then (global.set $mode (i32.const 1))))
    (if (call $has {spin}) (then (global.set $mode (i32.const 2))))
    (drop (call $get (i32.const 0) {path} (i32.const 700) (i32.const 704)))
    (i32.const 0))"#,
        trap = w.s("x-alloc-trap"),
        spin = w.s("x-alloc-spin"),
        path = w.s(":path"),
    );
    w.module(1, &funcs)
}

/// Hands the host one MiB of its memory (at 64 KiB) many times over: with `x-props`, as the
/// value of 300 properties `p000`.. (`x-props-set`: how many were taken); with `x-headers`, as
/// 200 values of request header `x-big`.
fn amplifier() -> Vec<u8> {
    let w = Wat::new();
    let funcs = format!(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $ok i32)
    (memory.fill (i32.const 65536) (i32.const 120) (i32.const 1048576))
    (if (call $has {props}) (then
      (loop $more
        (i32.store8 (i32.const 640) (i32.const 112))
        (i32.store8 (i32.const 641) (i32.add (i32.const 48) (i32.div_u (local.get $i) (i32.const 100))))
        (i32.store8 (i32.const 642) (i32.add (i32.const 48)
          (i32.rem_u (i32.div_u (local.get $i) (i32.const 10)) (i32.const 10))))
        (i32.store8 (i32.const 643) (i32.add (i32.const 48) (i32.rem_u (local.get $i) (i32.const 10))))
        (if (i32.eqz (call $setprop (i32.const 640) (i32.const 4) (i32.const 65536) (i32.const 1048576)))
          (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $i) (i32.const 300))))
      (call $report {props_set} (local.get $ok))))
    (if (call $has {headers}) (then
      (loop $more
        (drop (call $add (i32.const 0) {big} (i32.const 65536) (i32.const 1048576)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $i) (i32.const 200))))))
    (i32.const 0))"#,
        props = w.s("x-props"),
        props_set = w.s("x-props-set"),
        headers = w.s("x-headers"),
        big = w.s("x-big"),
    );
    w.module(18, &funcs)
}

/// Asks for 64 MiB more memory with `x-grow` and goes on when refused (`x-grown`: what
/// memory.grow answered); traps with `x-trap`.
fn modest_grower() -> Vec<u8> {
    let w = Wat::new();
    let funcs = format!(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (call $has {grow}) (then
      (call $report {grown} (i32.add (memory.grow (i32.const 1024)) (i32.const 1)))))
    (if (call $has {trap}) (then unreachable))
    (i32.const 0))"#,
        grow = w.s("x-grow"),
        grown = w.s("x-grown"),
        trap = w.s("x-trap"),
    );
    w.module(1, &funcs)
}

/// Traps in `proxy_on_configure` when given a configuration longer than 2 bytes; refuses (0)
/// any other.
fn unconfigurable() -> Vec<u8> {
    Wat::new().module(
        1,
        r#"(func (export "proxy_on_configure") (param i32) (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 2)) (then unreachable))
    (i32.const 0))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))"#,
    )
}

/// Route `name` of tenant `t` on `/{name}` to `up`.
async fn prefix_route(api: &Api, t: &str, name: &str, up: &Upstream) {
    let route = json!({"path_prefix": format!("/{name}"), "upstreams": [{"addr": up.target(), "weight": 1}]});
    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/v1/tenants/{t}/routes/{name}"),
            Some(OP),
            Some(Body::Json(route)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Attaches the already uploaded plugin `plugin` to route `route` with `body`.
async fn attach(gw: &Wharf, api: &Api, t: &str, route: &str, plugin: &str, body: Value) {
    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/v1/tenants/{t}/routes/{route}/plugins/{plugin}"),
            Some(OP),
            Some(Body::Json(body)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    gw.wait_for_version(v["config_version"].as_i64().unwrap())
        .await;
}

/// The header `name` the upstream saw (the echo server answers with the request's headers).
fn seen<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.json["headers"][name]
        .as_str()
        .unwrap_or_else(|| panic!("the upstream did not see {name}: {}", r.json))
}

/// A plugin's failure as the client sees it: (status, error code, plugin), and the message.
fn failure(r: &Reply) -> ((u16, &str, &str), &str) {
    (
        (
            r.status,
            r.json["error"].as_str().unwrap_or("-"),
            r.json["plugin"].as_str().unwrap_or("-"),
        ),
        r.json["message"].as_str().unwrap_or(""),
    )
}

fn restarts(m: &str, tenant: &str) -> f64 {
    metric_value(
        m,
        &format!("wharf_plugin_vm_restarts_total{{tenant=\"{tenant}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_proxy_wasm_modules_fail_only_their_own_requests() {
    let (gw, api, _a, _b, _r) = setup().await;
    let gw = Arc::new(gw);
    let up = Upstream::start("up").await;

    // The victim, b: a route without a plugin, and one with the counter module (the same bytes
    // the attacker traps with below).
    route_to(&api, "b", &up).await;
    prefix_route(&api, "b", "plugged", &up).await;
    upload_and_attach(
        &gw,
        &api,
        "b",
        "plugged",
        "counter",
        counter(),
        json!({"plugin_config": "b"}),
    )
    .await;

    // The attacker, a: tight limits, and a route per hostile module.
    route_to(&api, "a", &up).await;
    let (s, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(json!({
                "plugin_deadline_ms": 500,
                "plugin_fuel": 100_000_000_000u64,
                "plugin_memory_bytes": 4 << 20,
            }))),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let modules: [(&str, Vec<u8>, Value); 9] = [
        ("counter", counter(), json!({"plugin_config": "a"})),
        ("loop", endless_loop(), json!({})),
        ("hog", memory_hog(), json!({})),
        ("wild", wild_pointers(), json!({})),
        ("huge", huge_map(), json!({})),
        ("flood", header_flood(), json!({})),
        ("hop", context_hopper(), json!({})),
        ("alloc", garbage_allocator(), json!({})),
        (
            "cfgtrap",
            unconfigurable(),
            json!({"plugin_config": "trap"}),
        ),
    ];
    for (name, bytes, body) in modules {
        prefix_route(&api, "a", name, &up).await;
        upload_and_attach(&gw, &api, "a", name, name, bytes, body).await;
    }
    prefix_route(&api, "a", "cfgrefuse", &up).await;
    attach(&gw, &api, "a", "cfgrefuse", "cfgtrap", json!({})).await;

    // b's requests go on the whole time, concurrently: every one served, and its VM's counter
    // counts each of b's requests and nothing else (it is never restarted).
    let stop = Arc::new(AtomicBool::new(false));
    let victim = {
        let (gw, stop) = (gw.clone(), stop.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                let t = Instant::now();
                let r = gw.get("b.test", "/").await;
                assert_eq!(r.status, 200, "b, no plugin: {}", r.json);
                assert_eq!(r.json["upstream"], "up");
                let r = gw.get("b.test", "/plugged").await;
                assert_eq!(r.status, 200, "b, with its plugin: {}", r.json);
                n += 1;
                assert_eq!(seen(&r, "x-count"), n.to_string(), "b's VM: {}", r.json);
                assert_eq!(seen(&r, "x-config"), "b");
                assert_eq!(seen(&r, "x-tenant"), "b");
                worst = worst.max(t.elapsed());
            }
            (n, worst)
        })
    };

    // A trap, and WASI proc_exit: 502 plugin_trap for that request; the next one is served by a
    // new VM (its counter starts over), counted as a restart.
    let r = gw.get("a.test", "/counter").await;
    assert_eq!((r.status, seen(&r, "x-count")), (200, "1"), "{}", r.json);
    assert_eq!(seen(&r, "x-tenant"), "a");
    let r = gw
        .request("GET", "a.test", "/counter", &[("x-trap", "1")])
        .await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "counter"), "{}", r.json);
    assert!(failure(&r).1.contains("unreachable"), "{}", r.json);
    let r = gw.get("a.test", "/counter").await;
    assert_eq!(
        (r.status, seen(&r, "x-count")),
        (200, "1"),
        "a new VM: {}",
        r.json
    );
    let r = gw
        .request("GET", "a.test", "/counter", &[("x-exit", "1")])
        .await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "counter"), "{}", r.json);
    assert!(failure(&r).1.contains("proc_exit 3"), "{}", r.json);
    let r = gw.get("a.test", "/counter").await;
    assert_eq!((r.status, seen(&r, "x-count")), (200, "1"), "{}", r.json);
    let r = gw.get("a.test", "/counter").await;
    assert_eq!((r.status, seen(&r, "x-count")), (200, "2"), "{}", r.json);
    assert_eq!(restarts(&gw.metrics().await, "a"), 2.0);

    // An endless loop: 504 plugin_timeout at about the deadline (500 ms of its own time); twice.
    for _ in 0..2 {
        let t = Instant::now();
        let r = gw.get("a.test", "/loop").await;
        let took = t.elapsed();
        assert_eq!(failure(&r).0, (504, "plugin_timeout", "loop"), "{}", r.json);
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(5),
            "the loop ran {took:?}"
        );
    }

    // Memory growth past plugin_memory_bytes (4 MiB): refused, and the trap that follows is
    // reported as the memory limit.
    let r = gw.get("a.test", "/hog").await;
    assert_eq!(
        failure(&r).0,
        (502, "plugin_memory_limit", "hog"),
        "{}",
        r.json
    );
    assert!(failure(&r).1.contains("4194304"), "{}", r.json);

    // Wild pointers and lengths: each host call answers INVALID_MEMORY_ACCESS (6), a length
    // past 64 MiB BAD_ARGUMENT (2), WASI EFAULT (21); the module goes on and the request is
    // served, without the reply it asked for with a wild body.
    let r = gw.get("a.test", "/wild").await;
    assert_eq!(r.status, 200, "{}", r.json);
    for (name, status) in [
        ("x-oob-log", "6"),
        ("x-oob-len", "2"),
        ("x-oob-key", "6"),
        ("x-oob-ret", "6"),
        ("x-oob-pairs", "6"),
        ("x-oob-set", "6"),
        ("x-oob-reply", "6"),
        ("x-oob-prop", "6"),
        ("x-oob-time", "6"),
        ("x-oob-fd", "21"),
    ] {
        assert_eq!(seen(&r, name), status, "{name}: {}", r.json);
    }

    // A real 100,000-pair map (1.2 MB) for proxy_set_header_map_pairs: SERIALIZATION_FAILURE
    // (3), the request's headers untouched. 5,000 added values: the map stops at 1,024 pairs
    // and the edits are refused as output (502 plugin_invalid_output), in bounded time.
    let t = Instant::now();
    let r = gw
        .request("GET", "a.test", "/huge", &[("x-mine", "kept")])
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(seen(&r, "x-map-bytes"), "1200004");
    assert_eq!(seen(&r, "x-set-pairs"), "3");
    assert_eq!(seen(&r, "x-mine"), "kept");
    assert!(r.json["headers"].get("k").is_none(), "{}", r.json);
    let r = gw.get("a.test", "/flood").await;
    assert_eq!(
        failure(&r).0,
        (502, "plugin_invalid_output", "flood"),
        "{}",
        r.json
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );

    // Another request's context: while one request of this VM (carrying x-secret) waits for its
    // upstream, the next makes its context effective, which the ABI allows within a VM, and
    // reads x-secret: not found, its reads stay on its own request. A context that does not
    // exist is refused (BAD_ARGUMENT).
    let waiting = {
        let gw = gw.clone();
        tokio::spawn(async move {
            gw.request(
                "GET",
                "a.test",
                "/hop?sleep_ms=1500",
                &[("x-secret", "s3cret")],
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = gw.get("a.test", "/hop").await;
    let first = waiting.await.unwrap();
    assert_eq!((first.status, r.status), (200, 200), "{}", r.json);
    // The module reads its own request's secret (so the next one's miss means something).
    assert_eq!(seen(&first, "x-leaked"), "s3cret", "{}", first.json);
    let first_context: u32 = seen(&first, "x-context").parse().unwrap();
    assert_eq!(
        seen(&r, "x-context"),
        (first_context + 1).to_string(),
        "{}",
        r.json
    );
    assert_eq!(
        seen(&r, "x-eff-prev"),
        "0",
        "the waiting request's context is live: {}",
        r.json
    );
    assert_eq!(seen(&r, "x-eff-far"), "2");
    assert_eq!(seen(&r, "x-secret-status"), "1", "NOT_FOUND: {}", r.json);
    assert!(r.json["headers"].get("x-leaked").is_none(), "{}", r.json);
    assert!(r.json["headers"].get("x-secret").is_none(), "{}", r.json);

    // An allocator answering garbage while the host returns data: refused (6) each time, nothing
    // written (the canary at the end of memory is intact); a sane answer then works.
    let r = gw.get("a.test", "/alloc").await;
    assert_eq!(r.status, 200, "{}", r.json);
    for (name, status) in [
        ("x-alloc-high", "6"),
        ("x-alloc-pairs", "6"),
        ("x-alloc-prop", "6"),
        ("x-alloc-zero", "6"),
        ("x-alloc-edge", "6"),
        ("x-canary", "0"),
        ("x-alloc-ok", "0"),
        ("x-path-seen", "/alloc"),
    ] {
        assert_eq!(seen(&r, name), status, "{name}: {}", r.json);
    }

    // A VM that refuses its configuration: a clear message naming the callback.
    let r = gw.get("a.test", "/cfgrefuse").await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "cfgtrap"), "{}", r.json);
    assert!(
        failure(&r).1.contains("proxy_on_configure refused"),
        "{}",
        r.json
    );

    // A trap in proxy_on_configure: the VM never starts; the first failures restart it, then it
    // backs off and requests fail fast with plugin_unavailable naming the backoff, without a
    // start each.
    let before = restarts(&gw.metrics().await, "a");
    let mut traps = 0;
    let mut unavailable = Vec::new();
    for _ in 0..40 {
        let t = Instant::now();
        let r = gw.get("a.test", "/cfgtrap").await;
        let took = t.elapsed();
        match failure(&r) {
            ((502, "plugin_trap", "cfgtrap"), _) => traps += 1,
            ((502, "plugin_unavailable", "cfgtrap"), message) => {
                assert!(
                    message.contains("failed") && message.contains("started again in"),
                    "{message}"
                );
                unavailable.push(took);
            }
            other => panic!("{other:?}: {}", r.json),
        }
        if unavailable.len() >= 10 {
            break;
        }
    }
    assert!(
        traps >= 2 && unavailable.len() >= 10,
        "{traps} traps, {} unavailable",
        unavailable.len()
    );
    // Every start after the first was a restart; the fast failures started nothing.
    let m = gw.metrics().await;
    assert_eq!(restarts(&m, "a") - before, f64::from(traps - 1), "{m}");
    println!("cfgtrap: {traps} starts, fast failures took {unavailable:?}");

    // The victim never noticed: every request served, its VM never restarted.
    stop.store(true, Ordering::Relaxed);
    let (n, worst) = victim.await.unwrap();
    println!("b: {n} requests (twice) during the attacks, slowest pair {worst:?}");
    assert!(n >= 5, "b made {n} requests");
    let m = gw.metrics().await;
    assert_eq!(restarts(&m, "b"), 0.0, "{m}");
    let r = gw.get("a.test", "/").await;
    assert_eq!(r.status, 200, "a's own plugin-free route: {}", r.json);
    assert!(metric_sum(&m, "wharf_plugin_vms") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_module_in_two_tenants_runs_in_two_vms_that_share_nothing() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    let bytes = counter();
    let mut shas = Vec::new();
    for t in ["a", "b"] {
        route_to(&api, t, &up).await;
        let (s, v) = api.put_plugin(t, "counter", OP, bytes.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        shas.push(v["sha256"].clone());
        attach(
            &gw,
            &api,
            t,
            "api",
            "counter",
            json!({"plugin_config": {"who": t}}),
        )
        .await;
    }
    assert_eq!(shas[0], shas[1], "the same bytes");

    // Interleaved: each VM counts its own tenant's requests only, with its own configuration.
    let mut count = [0, 0];
    for t in ["a", "b", "a", "a", "b", "a", "b"] {
        let i = usize::from(t == "b");
        count[i] += 1;
        let r = gw.get(&format!("{t}.test"), "/").await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(seen(&r, "x-count"), count[i].to_string(), "{t}: {}", r.json);
        assert_eq!(seen(&r, "x-tenant"), t);
        let config: Value = serde_json::from_str(seen(&r, "x-config")).unwrap();
        assert_eq!(config, json!({"who": t}));
    }
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_plugin_vms"), 2.0, "{m}");
    assert_eq!(metric_sum(&m, "wharf_plugin_vm_restarts_total"), 0.0);

    // a's module trapping restarts a's VM only: b's counter goes on.
    let r = gw.request("GET", "a.test", "/", &[("x-trap", "1")]).await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "counter"), "{}", r.json);
    let r = gw.get("a.test", "/").await;
    assert_eq!(seen(&r, "x-count"), "1", "a's new VM: {}", r.json);
    let r = gw.get("b.test", "/").await;
    assert_eq!(
        seen(&r, "x-count"),
        (count[1] + 1).to_string(),
        "{}",
        r.json
    );
    let m = gw.metrics().await;
    assert_eq!(metric_value(&m, "wharf_plugin_vms"), 2.0, "{m}");
    assert_eq!((restarts(&m, "a"), restarts(&m, "b")), (1.0, 0.0), "{m}");
}

/// The module's allocator runs inside a host call: a trap there, or running past the deadline
/// there, is the module failing, as anywhere else (its VM is dropped, the request fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_or_a_spin_in_the_modules_allocator_fails_its_request() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let (s, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(
                json!({"plugin_deadline_ms": 300, "plugin_fuel": 100_000_000_000u64}),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    upload_and_attach(
        &gw,
        &api,
        "a",
        "api",
        "alloc",
        failing_allocator(),
        json!({}),
    )
    .await;
    let r = gw.get("a.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.json);

    let r = gw
        .request("GET", "a.test", "/", &[("x-alloc-trap", "1")])
        .await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "alloc"), "{}", r.json);
    let t = Instant::now();
    let r = gw
        .request("GET", "a.test", "/", &[("x-alloc-spin", "1")])
        .await;
    assert_eq!(
        failure(&r).0,
        (504, "plugin_timeout", "alloc"),
        "{} after {:?}",
        r.json,
        t.elapsed()
    );
    // Two failures in a row: the next start waits 100 ms (a VM failing request after request
    // backs off even though each start succeeds).
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let r = gw.get("a.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(restarts(&gw.metrics().await, "a"), 2.0);
}

/// The gateway's peak resident memory (VmHWM).
fn peak_rss(gw: &Wharf) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// A tenant whose module may use 4 MiB, with a generous deadline, and the amplifier attached.
async fn amplifier_gateway() -> (Wharf, Api, Upstream) {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    let (s, v) = api
        .call(
            Method::PATCH,
            "/v1/tenants/a/quotas",
            Some(OP),
            Some(Body::Json(
                json!({"plugin_deadline_ms": 5000, "plugin_memory_bytes": 4 << 20}),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    upload_and_attach(&gw, &api, "a", "api", "amp", amplifier(), json!({})).await;
    let r = gw.get("a.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.json);
    (gw, api, up)
}

/// What a module hands the host is bounded by what the host keeps, not by how often the module
/// hands it: 200 header values of the same MiB (the module's memory is capped at 4 MiB) must not
/// cost the node 200 MiB, nor the copies made of the map after the callback (before maps were
/// bounded in bytes, one such request grew the node's peak memory by 856 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_cannot_make_the_node_hold_its_memory_many_times_over_in_headers() {
    let (gw, _api, _up) = amplifier_gateway().await;
    let before = peak_rss(&gw);
    let r = gw
        .request("GET", "a.test", "/", &[("x-headers", "1")])
        .await;
    let grown = peak_rss(&gw).saturating_sub(before);
    // The map stops taking values at 1 MiB: none of them fits beside the request's headers.
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(r.json["headers"].get("x-big").is_none(), "{}", r.json);
    assert!(
        grown < 64 << 20,
        "the node's peak memory grew by {} MiB",
        grown >> 20
    );
}

// BUG (not fixed here: plugins/src/proxy_wasm/env.rs, where the lead works): proxy_set_property
// takes up to 256 properties of up to 1 MiB each, and a module can hand the same MiB of its
// memory for each, so one request pins ~256 MiB of the node's memory (not counted in the
// tenant's plugin_memory_bytes) for as long as it is in flight (the properties live in the
// request's stream until it ends; a slow upstream keeps them). A hundred such requests in flight
// are 25 GiB. Measured: 238 properties taken, the peak grew by ~240 MiB. The fix: a cap on the
// bytes of all the properties a module sets (e.g. 1 MiB in total), answered BAD_ARGUMENT past it.
// Un-ignore this test with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_cannot_make_the_node_hold_its_memory_many_times_over_in_properties() {
    let (gw, _api, _up) = amplifier_gateway().await;
    let before = peak_rss(&gw);
    let r = gw
        .request("GET", "a.test", "/?sleep_ms=500", &[("x-props", "1")])
        .await;
    let grown = peak_rss(&gw).saturating_sub(before);
    assert_eq!(r.status, 200, "{}", r.json);
    println!("properties taken: {}", seen(&r, "x-props-set"));
    assert!(
        grown < 64 << 20,
        "the node's peak memory grew by {} MiB",
        grown >> 20
    );
}

/// A VM lives across requests: a growth refused in one (which the module survived) does not make
/// a later, unrelated trap a memory-limit failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_failure_is_named_for_what_happened_in_its_own_callback() {
    let (gw, api, _a, _b, _r) = setup().await;
    let up = Upstream::start("up").await;
    route_to(&api, "a", &up).await;
    upload_and_attach(&gw, &api, "a", "api", "grower", modest_grower(), json!({})).await;
    let r = gw.request("GET", "a.test", "/", &[("x-grow", "1")]).await;
    // memory.grow answered -1 (refused past the 16 MiB default), seen here as 0.
    assert_eq!((r.status, seen(&r, "x-grown")), (200, "0"), "{}", r.json);
    let r = gw.request("GET", "a.test", "/", &[("x-trap", "1")]).await;
    assert_eq!(failure(&r).0, (502, "plugin_trap", "grower"), "{}", r.json);
}
