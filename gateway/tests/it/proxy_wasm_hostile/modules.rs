//! The hostile modules, written here in WAT: each does one hostile thing.

use std::cell::RefCell;

use wharf_plugins::test_support::binary;

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
pub(super) fn counter() -> Vec<u8> {
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
pub(super) fn endless_loop() -> Vec<u8> {
    Wat::new().module(
        1,
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (loop $spin (br $spin))
    (i32.const 0))"#,
    )
}

/// Grows its memory a MiB at a time until refused, then traps (as an allocator out of memory).
pub(super) fn memory_hog() -> Vec<u8> {
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
pub(super) fn wild_pointers() -> Vec<u8> {
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
pub(super) fn huge_map() -> Vec<u8> {
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
pub(super) fn header_flood() -> Vec<u8> {
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
pub(super) fn context_hopper() -> Vec<u8> {
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
pub(super) fn garbage_allocator() -> Vec<u8> {
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
pub(super) fn failing_allocator() -> Vec<u8> {
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
pub(super) fn amplifier() -> Vec<u8> {
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
pub(super) fn modest_grower() -> Vec<u8> {
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
pub(super) fn unconfigurable() -> Vec<u8> {
    Wat::new().module(
        1,
        r#"(func (export "proxy_on_configure") (param i32) (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 2)) (then unreachable))
    (i32.const 0))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))"#,
    )
}
