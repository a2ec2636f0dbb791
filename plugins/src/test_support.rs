//! Plugins for tests of every crate: the example plugins built by `scripts/build-plugins`, and
//! hand-written adversarial components in WAT (loops, memory growth, recursion, traps, huge
//! output), written as WAT text and compiled to a binary component here (the runtime accepts
//! binary components only).

/// Bytes of an example plugin built from `plugins/examples/NAME`.
pub fn example_plugin(name: &str) -> Vec<u8> {
    let dir = std::env::var("WHARF_PLUGIN_DIR").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
        let cache =
            std::env::var("WHARF_CACHE_DIR").unwrap_or_else(|_| format!("{home}/.cache/wharf"));
        format!("{cache}/plugins")
    });
    let path = std::path::Path::new(&dir).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example plugins with scripts/build-plugins (scripts/test does)",
            path.display()
        )
    })
}

/// The world's types, as a component imports them (copied from what wit-component emits).
pub const TYPES: &str = r#"
  (type $types-ty
    (instance
      (type (;0;) (list u8))
      (type (;1;) (record (field "name" string) (field "value" 0)))
      (export (;2;) "header" (type (eq 1)))
      (type (;3;) (list 2))
      (type (;4;) (record (field "method" string) (field "path" string) (field "headers" 3) (field "client-addr" string) (field "tenant-id" string) (field "route-id" string)))
      (export (;5;) "request" (type (eq 4)))
      (type (;6;) (variant (case "set" 2) (case "append" 2) (case "remove" string)))
      (export (;7;) "header-op" (type (eq 6)))
      (type (;8;) (list 7))
      (type (;9;) (option string))
      (type (;10;) (record (field "headers" 8) (field "path" 9)))
      (export (;11;) "request-edits" (type (eq 10)))
      (type (;12;) (record (field "status" u16) (field "headers" 3) (field "body" 0)))
      (export (;13;) "reply" (type (eq 12)))
      (type (;14;) (variant (case "continue" 11) (case "respond" 13)))
      (export (;15;) "request-action" (type (eq 14)))
      (type (;16;) (record (field "status" u16) (field "headers" 3)))
      (export (;17;) "response" (type (eq 16)))
      (type (;18;) (option u16))
      (type (;19;) (record (field "status" 18) (field "headers" 8)))
      (export (;20;) "response-action" (type (eq 19)))
    )
  )
  (import "wharf:plugin/types@0.1.0" (instance $types (type $types-ty)))
  (alias export $types "request" (type $request))
  (import "request" (type $req (eq $request)))
  (alias export $types "request-action" (type $request-action))
  (import "request-action" (type $req-action (eq $request-action)))
  (alias export $types "response" (type $response))
  (import "response" (type $resp (eq $response)))
  (alias export $types "response-action" (type $response-action))
  (import "response-action" (type $resp-action (eq $response-action)))
"#;

/// An `http-plugin`'s two exports, lifted from core instance `$main` (its `on-request` and
/// `on-response`) with memory `$memory` and `$cabi_realloc`: the end of every WAT component here.
pub const LIFTED_PHASES: &str = r#"(type $on-request-ty (func (param "req" $req) (result $req-action)))
  (alias core export $main "on-request" (core func $on-request-core))
  (func $on-request (type $on-request-ty) (canon lift (core func $on-request-core) (memory $memory) (realloc $cabi_realloc) string-encoding=utf8))
  (export "on-request" (func $on-request))
  (type $on-response-ty (func (param "resp" $resp) (result $resp-action)))
  (alias core export $main "on-response" (core func $on-response-core))
  (func $on-response (type $on-response-ty) (canon lift (core func $on-response-core) (memory $memory) (realloc $cabi_realloc) string-encoding=utf8))
  (export "on-response" (func $on-response))"#;

/// A bump allocator over the module's memory from `$bump`: the `cabi_realloc` the canonical ABI
/// calls to pass strings and lists in.
pub const REALLOC: &str = r#"(func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (if (i32.gt_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536)))
        (then (drop (memory.grow (i32.add (i32.const 1)
          (i32.div_u (i32.sub (global.get $bump) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536)))))))
      (local.get $p))"#;

/// A component of the Wharf world whose `on-request` runs `body` (WAT instructions) and then
/// returns the action laid out at address 0 of its memory (all zeros: continue, no edits).
/// `extra` adds core functions or data; `pages` sizes the memory.
pub fn wat_plugin(body: &str, extra: &str, pages: u32) -> Vec<u8> {
    binary(&wat_plugin_text(body, extra, pages))
}

/// A no-op plugin that also instantiates `n` empty core modules: it holds `n + 1` core
/// instances, as a Python component holds ~40.
pub fn core_instance_hog(n: usize) -> Vec<u8> {
    let extra: String = (0..n)
        .map(|_| "(core instance (instantiate $empty))\n")
        .collect();
    binary(&wat_plugin_text("", "", 1).replacen(
        "(core instance $main (instantiate $m))",
        &format!("(core module $empty)\n(core instance $main (instantiate $m))\n{extra}"),
        1,
    ))
}

fn wat_plugin_text(body: &str, extra: &str, pages: u32) -> String {
    wat_phases_text(body, "", extra, pages)
}

/// [`wat_plugin_text`] whose `on-response` also runs `response` (WAT instructions) first.
fn wat_phases_text(body: &str, response: &str, extra: &str, pages: u32) -> String {
    format!(
        r#"(component
  {TYPES}
  (core module $m
    (memory (export "memory") {pages})
    (global $bump (mut i32) (i32.const {heap}))
    {REALLOC}
    {extra}
    (func (export "on-request") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      {body}
      (i32.const 0))
    (func (export "on-response") (param i32 i32 i32) (result i32)
      {response}
      (i32.const 256))
  )
  (core instance $main (instantiate $m))
  (alias core export $main "memory" (core memory $memory))
  (alias core export $main "cabi_realloc" (core func $cabi_realloc))
  {LIFTED_PHASES}
)"#,
        heap = pages * 65536,
    )
}

/// WAT text as a binary component; a typo in a test's WAT is a test bug, so it panics.
pub fn binary(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap_or_else(|e| panic!("test WAT does not parse: {e}"))
}

/// Looks for what an earlier instance of it left behind, and leaves its own: a hostile plugin
/// reading the last request's (maybe another tenant's) memory through a reused pool slot.
/// `on-request` traps if anything differs from a fresh instance: a word in its first page and
/// one in its second (both reset in place at drop), its data segment's byte, its global, its
/// table's size and an entry, its memory's size, and, once it has grown its memory to 4 MiB, a
/// word at 600 KiB (reset in place) and one at 3 MiB (past what the pool keeps resident:
/// decommitted). Then it writes secrets to all of them and grows its table. `on-response`
/// traps unless the secrets are still there: the probes do see what is written. `data` is its
/// data segment's byte: snoops with different bytes are different code, with their own images.
pub fn memory_snoop(data: u8) -> Vec<u8> {
    const SECRET: &str = "(i32.const 0x5ec2e7)";
    let probes: [u32; 4] = [1024, 70_000, 614_400, 3_145_728];
    let clean = |at: &[u32]| -> String {
        at.iter()
            .map(|a| format!("(if (i32.load (i32.const {a})) (then unreachable))\n"))
            .collect()
    };
    let (clean_low, clean_grown) = (clean(&probes[..2]), clean(&probes[2..]));
    let write: String = probes
        .iter()
        .map(|a| format!("(i32.store (i32.const {a}) {SECRET})\n"))
        .collect();
    let still: String = probes
        .iter()
        .map(|a| format!("(if (i32.ne (i32.load (i32.const {a})) {SECRET}) (then unreachable))\n"))
        .collect();
    // 2 pages, and the request's strings: the bump allocator grows from the end of them.
    let body = format!(
        "{clean_low}
        (if (i32.ne (i32.load8_u (i32.const 200)) (i32.const {data})) (then unreachable))
        (if (i32.ne (global.get $g) (i32.const 7)) (then unreachable))
        (if (i32.ne (table.size $t) (i32.const 2)) (then unreachable))
        (if (i32.eqz (ref.is_null (table.get $t (i32.const 1)))) (then unreachable))
        (if (i32.gt_u (memory.size) (i32.const 8)) (then unreachable))
        (drop (memory.grow (i32.sub (i32.const 64) (memory.size))))
        {clean_grown}
        {write}
        (i32.store8 (i32.const 200) (i32.const 90))
        (global.set $g (i32.const 99))
        (table.set $t (i32.const 1) (ref.func $marker))
        (drop (table.grow $t (ref.func $marker) (i32.const 6)))"
    );
    let response = format!(
        "{still}
        (if (i32.ne (i32.load8_u (i32.const 200)) (i32.const 90)) (then unreachable))
        (if (i32.ne (global.get $g) (i32.const 99)) (then unreachable))
        (if (ref.is_null (table.get $t (i32.const 1))) (then unreachable))
        (if (i32.ne (table.size $t) (i32.const 8)) (then unreachable))"
    );
    let extra = format!(
        r#"(global $g (mut i32) (i32.const 7)) (data (i32.const 200) "\{data:02x}")
      (table $t 2 16 funcref) (func $marker) (elem declare func $marker)"#
    );
    binary(&wat_phases_text(&body, &response, &extra, 2))
}

/// Looks for functions an earlier instance left in its table, and leaves its own: a table of
/// 2,048 functions (16 KiB, four pages, so the pool resets it by its written pages), entries in
/// three of its pages. `on-request` traps unless they are null, then sets them; `on-response` traps
/// unless they are still set. A stale entry would be a pointer into another instance.
pub fn table_snoop() -> Vec<u8> {
    const AT: [u32; 3] = [100, 700, 1500];
    let each = |what: &str| -> String {
        AT.iter()
            .map(|i| what.replace('I', &i.to_string()))
            .collect()
    };
    let body = format!(
        "{}{}",
        each("(if (i32.eqz (ref.is_null (table.get $t (i32.const I)))) (then unreachable))\n"),
        each("(table.set $t (i32.const I) (ref.func $marker))\n"),
    );
    let response = each("(if (ref.is_null (table.get $t (i32.const I))) (then unreachable))\n");
    let extra = "(table $t 2048 2048 funcref) (func $marker) (elem declare func $marker)";
    binary(&wat_phases_text(&body, &response, extra, 2))
}

/// Writes a secret to every other page of its memory from 512 KiB to 3 MiB (320 pages apart from
/// each other: 320 separate dirty runs, more than the pool's page scan takes in one call, and
/// 1.25 MiB in all, more than the pool keeps resident), after checking that none of them holds
/// one: `on-request` traps on what an earlier instance left, `on-response` unless its own
/// secrets are still there.
pub fn memory_scatter() -> Vec<u8> {
    let each = |what: &str| {
        format!(
            "(local.set $a (i32.const 524288))
            (loop $pages
              {what}
              (local.set $a (i32.add (local.get $a) (i32.const 8192)))
              (br_if $pages (i32.lt_u (local.get $a) (i32.const 3145728))))"
        )
    };
    // 2 pages, and the request's strings after them (the bump allocator grows the memory):
    // fresh, it is far below the 49 pages (3 MiB and a page) it grows to.
    let body = format!(
        "(local $a i32)
        (if (i32.gt_u (memory.size) (i32.const 8)) (then unreachable))
        (drop (memory.grow (i32.sub (i32.const 49) (memory.size))))
        {}
        {}",
        each("(if (i32.load (local.get $a)) (then unreachable))"),
        each("(i32.store (local.get $a) (i32.const 0x5ec2e7))"),
    );
    let response = format!(
        "(local $a i32)
        {}",
        each("(if (i32.ne (i32.load (local.get $a)) (i32.const 0x5ec2e7)) (then unreachable))")
    );
    binary(&wat_phases_text(&body, &response, "", 2))
}

/// Does nothing: continue, no edits.
pub fn noop() -> Vec<u8> {
    wat_plugin("", "", 1)
}

/// Spins forever.
pub fn infinite_loop() -> Vec<u8> {
    wat_plugin("(loop $spin (br $spin))", "", 1)
}

/// Grows its memory until refused, then aborts like an allocator out of memory.
pub fn memory_hog() -> Vec<u8> {
    wat_plugin(
        "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
        "",
        1,
    )
}

/// Recurses without end.
pub fn deep_recursion() -> Vec<u8> {
    wat_plugin(
        "(drop (call $rec (i32.const 0)))",
        "(func $rec (param i32) (result i32) (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))",
        1,
    )
}

/// Executes `unreachable`.
pub fn trap() -> Vec<u8> {
    wat_plugin("unreachable", "", 1)
}

/// Continues with one `set` header whose value is 1 MiB.
pub fn huge_headers() -> Vec<u8> {
    // Action at 0: continue (tag 0), headers = (ptr 1024, len 1), path = none.
    // Header op at 1024: set (tag 0), name = (2048, 1) "x", value = (4096, 1 MiB of 'a').
    let body = "(i32.store (i32.const 4) (i32.const 1024)) (i32.store (i32.const 8) (i32.const 1))
      (i32.store8 (i32.const 1024) (i32.const 0))
      (i32.store (i32.const 1028) (i32.const 2048)) (i32.store (i32.const 1032) (i32.const 1))
      (i32.store (i32.const 1036) (i32.const 4096)) (i32.store (i32.const 1040) (i32.const 1048576))
      (i32.store8 (i32.const 2048) (i32.const 120))
      (memory.fill (i32.const 4096) (i32.const 97) (i32.const 1048576))";
    wat_plugin(body, "", 18)
}

/// The `log` import and a memory module with `cabi_realloc` (instance `$memi`, memory
/// `$memory`), with `log` lowered into core instance `$host`: what a WAT component that logs
/// puts before its own core module (which imports `env` `memory` and `host` `log`).
pub fn log_host() -> String {
    format!(
        r#"(type $log-ty (instance
    (type (;0;) (enum "trace" "debug" "info" "warn" "error"))
    (export (;1;) "level" (type (eq 0)))
    (type (;2;) (func (param "level" 1) (param "message" string)))
    (export (;0;) "log" (func (type 2)))
  ))
  (import "wharf:plugin/log@0.1.0" (instance $log (type $log-ty)))
  (alias export $log "log" (func $log-f))
  (core module $mem
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 16384))
    {REALLOC})
  (core instance $memi (instantiate $mem))
  (alias core export $memi "memory" (core memory $memory))
  (alias core export $memi "cabi_realloc" (core func $cabi_realloc))
  (core func $log-lowered (canon lower (func $log-f) (memory $memory) string-encoding=utf8))
  (core instance $host (export "log" (func $log-lowered)))"#
    )
}

/// Writes `lines` one-byte log lines at `info` in `on-request`, then continues: a chatty (or
/// hostile) plugin against its tenant's log quota.
pub fn log_flood(lines: u32) -> Vec<u8> {
    http_plugin(
        &format!(
            "(block $done (loop $again
        (br_if $done (i32.ge_u (local.get $i) (i32.const {lines})))
        (call $log (i32.const 2) (i32.const 8192) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $again)))
      (i32.const 0)"
        ),
        "(i32.const 256)",
        "",
    )
}

/// An `http-plugin` that imports only `log` (`$log`: level, pointer, length; memory address
/// 8192 holds the byte `x`; `on-request` has a local `$i`). `on_request` and `on_response` are
/// the WAT bodies of the two exports, each leaving the address of its result in memory (all
/// zeros: continue, unchanged); `extra` adds globals and functions.
pub fn http_plugin(on_request: &str, on_response: &str, extra: &str) -> Vec<u8> {
    let log_host = log_host();
    binary(&format!(
        r#"(component
  {TYPES}
  {log_host}
  (core module $m
    (import "env" "memory" (memory 1))
    (import "host" "log" (func $log (param i32 i32 i32)))
    {extra}
    (func (export "on-request") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (local $i i32)
      (i32.store8 (i32.const 8192) (i32.const 120))
      {on_request})
    (func (export "on-response") (param i32 i32 i32) (result i32)
      {on_response}))
  (core instance $main (instantiate $m (with "env" (instance $memi)) (with "host" (instance $host))))
  {LIFTED_PHASES}
)"#
    ))
}

/// A component that imports a WASI interface Wharf does not provide.
pub fn wasi_importer() -> Vec<u8> {
    binary(
        r#"(component
  (import "wasi:filesystem/preopens@0.2.0" (instance $fs
    (export "get-directories" (func (result (list string))))))
)"#,
    )
}

/// The node's capabilities with these Redis and SQL backends (others at their defaults), the
/// node's result memory at `result_budget_bytes`: what the backend tests build again and again.
pub fn capabilities(
    redis_url: Option<String>,
    sql: crate::capabilities::sql::SqlBackend,
    result_budget_bytes: u64,
) -> std::sync::Arc<crate::capabilities::Capabilities> {
    let settings = crate::capabilities::CapabilitySettings {
        redis: crate::capabilities::redis::RedisSettings {
            url: redis_url,
            ..Default::default()
        },
        sql,
        ..Default::default()
    };
    let metrics = std::sync::Arc::new(wharf_metrics::Metrics::new());
    crate::capabilities::Capabilities::new(settings, metrics, result_budget_bytes)
        .unwrap_or_else(|e| panic!("test capabilities: {e}"))
}

/// An invocation by `tenant` of its attachment `plugin` with `config`, default quotas, no
/// outbound hosts, body or backends.
pub fn invocation<'a>(
    (tenant, plugin): (&'a std::sync::Arc<str>, &'a std::sync::Arc<str>),
    config: &[(&str, &str)],
) -> crate::Invocation<'a> {
    crate::Invocation {
        tenant,
        plugin,
        quotas: crate::PluginQuotas::default(),
        config: crate::attachment_config(config.iter().copied()),
        outbound: Default::default(),
        request_body: None,
        capabilities: None,
    }
}

/// A GET of `path` from 127.0.0.1 with `headers`, as the gateway hands it to `on-request`.
pub fn get_request(path: &str, headers: &[(&str, &str)], tenant: &str) -> crate::types::Request {
    crate::types::Request {
        method: "GET".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(n, v)| crate::types::Header {
                name: n.to_string(),
                value: v.as_bytes().to_vec(),
            })
            .collect(),
        client_addr: "127.0.0.1".into(),
        tenant_id: tenant.into(),
        route_id: "api".into(),
    }
}

/// Wharf's count of `tenant`'s bytes in Redis (the usage key; absent: 0). Panics on a Redis
/// error: a test's failure report.
pub async fn redis_usage(
    conn: &mut deadpool_redis::redis::aio::MultiplexedConnection,
    tenant: &str,
) -> i64 {
    let v: Option<i64> = deadpool_redis::redis::cmd("GET")
        .arg(crate::capabilities::redis::usage_key(tenant))
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("reading the usage of {tenant}: {e}"));
    v.unwrap_or(0)
}
