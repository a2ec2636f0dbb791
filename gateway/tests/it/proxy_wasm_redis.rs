//! Lua scripts through Higress's Redis extension, on the tenant's Redis: only the operator's
//! trusted scripts run (`[redis] trusted_scripts`), every `KEYS[i]` inside the tenant's
//! namespace, a key named any other way refused inside Redis. The Higress `rate-limit` Go
//! plugin (prebuilt) in its Redis mode, its script approved by SHA1, limits each user of a
//! tenant with counters under that tenant's prefix; another tenant counts apart. A hostile
//! raw-ABI module (WAT) sends scripts of its own, keys aimed at another tenant, too many keys and
//! a script that would hold Redis: each is refused, and the other tenant's key never changes.

use deadpool_redis::redis;
use reqwest::Method;
use serde_json::json;

use super::proxy_wasm_hostile::Wat;
use crate::proxy_wasm_serve::{higress, route_to, upload_and_attach};
use crate::support::api::{Api, Body, OP};
use crate::support::*;

/// SHA1 of the Lua script `gpustack-rate-limit` 0.5.1 sends (its exact text, 3,592 bytes; the
/// one docs/proxy-wasm.md tells operators to approve).
const RATE_LIMIT_SCRIPT: &str = "0285be0cecdf224b1a32ebbd35189e25210c305c";

/// A gateway on the test Redis with `trusted` approved, and two tenants of unique names (other
/// tests share this Redis) with a route each to `up`.
async fn gateway(trusted: &[String], up: &Upstream) -> (Wharf, Api, [String; 2]) {
    let (url, _store) = fresh_store(StoreKind::Sqlite).await;
    let toml = format!(
        "operator_token = \"{OP}\"\n[redis]\nurl = \"{}\"\ntrusted_scripts = {}\n",
        redis_url(),
        serde_json::to_string(trusted).unwrap()
    );
    let gw = Wharf::start_configured(&url, &toml, &[]).await;
    let api = Api::new(&gw);
    let tenants = [tenant_id(), tenant_id()];
    for t in &tenants {
        let body = json!({"id": t, "hostnames": [format!("{t}.test")]});
        let (s, v) = api
            .call(
                Method::POST,
                "/v1/tenants",
                Some(OP),
                Some(Body::Json(body)),
            )
            .await;
        assert!(s.is_success(), "{v}");
        route_to(&api, t, up).await;
    }
    (gw, api, tenants)
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap()
}

/// A request's status and body text.
async fn send(gw: &Wharf, host: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .get(format!("http://{}/items", gw.proxy))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn higress_rate_limit_counts_in_redis_under_the_tenants_prefix_with_its_approved_script() {
    let up = Upstream::start("up").await;
    let (gw, api, tenants) = gateway(&[RATE_LIMIT_SCRIPT.to_string()], &up).await;
    let config = json!({
        "rule_name": "per-user",
        "limit_combinations": [{
            "name": "by-user",
            "match": [{"source": "header", "name": "x-user", "value": "*"}],
            "query_limits": {"per_minute": 3}
        }],
        "rejected_code": 429,
        "enable_on_path_suffix": ["*"],
        "redis": {"service_name": "redis.example", "service_port": 6379}
    });
    for t in &tenants {
        let body = json!({"plugin_config": config});
        let bytes = higress("gpustack-rate-limit");
        upload_and_attach(&gw, &api, t, "api", "limit", bytes, body).await;
    }
    let host = |t: &String| format!("{t}.test");
    let mut alice = Vec::new();
    for _ in 0..4 {
        let (status, _) = send(&gw, &host(&tenants[0]), &[("x-user", "alice")]).await;
        alice.push(status);
    }
    let log = gw.log();
    let tail = &log[log.len().saturating_sub(3000)..];
    assert_eq!(alice, [200, 200, 200, 429], "3 a minute for alice:\n{tail}");
    let (bob, _) = send(&gw, &host(&tenants[0]), &[("x-user", "bob")]).await;
    assert_eq!(bob, 200, "bob counts apart");
    let (other, _) = send(&gw, &host(&tenants[1]), &[("x-user", "alice")]).await;
    assert_eq!(
        other, 200,
        "the other tenant's alice never used the first's"
    );

    let mut conn = redis().await;
    let [a, b] = &tenants;
    let a_keys = keys(&mut conn, &format!("wharf:t:{a}:*")).await;
    let b_keys = keys(&mut conn, &format!("wharf:t:{b}:*")).await;
    assert!(
        a_keys.iter().any(|k| k.contains("alice")) && a_keys.iter().any(|k| k.contains("bob")),
        "the counters, under the tenant's prefix: {a_keys:?}"
    );
    assert_eq!(b_keys.len(), 1, "{b_keys:?}");
    let alice_key = a_keys.iter().find(|k| k.contains("alice")).unwrap();
    let counted: i64 = redis::cmd("ZCARD")
        .arg(alice_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(counted, 3, "the 4th request was refused, not counted");
    let everything = keys(&mut conn, "*").await;
    let loose: Vec<&String> = everything
        .iter()
        .filter(|k| k.contains("alice") && !k.starts_with("wharf:t:"))
        .collect();
    assert!(
        loose.is_empty(),
        "no counter outside a namespace: {loose:?}"
    );
    // What the wrapped script costs Redis (every EVALSHA on this Redis is a trusted script's).
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let evalsha = stats.lines().find(|l| l.starts_with("cmdstat_evalsha"));
    eprintln!("trusted scripts on Redis: {evalsha:?}");
    let m = gw.metrics().await;
    assert!(
        !m.lines().any(|l| l.starts_with("wharf_host_calls_total")
            && l.contains("proxy_redis_call")
            && l.contains("denied")),
        "the approved script is never refused:\n{m}"
    );
}

/// On each request, sends the RESP command in header `x-q` (`~~` standing for CRLF) with
/// `proxy_redis_call`, and answers with Redis's RESP reply as the body.
fn redis_prober() -> Vec<u8> {
    let w = Wat::new();
    w.import(
        r#"(import "env" "proxy_redis_call" (func $redis (param i32 i32 i32 i32 i32) (result i32)))"#,
    );
    let funcs = format!(
        r#"(global $ctx (mut i32) (i32.const 0))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
    (local $n i32) (local $i i32)
    (if (call $get (i32.const 0) {q} (i32.const 700) (i32.const 704)) (then (return (i32.const 0))))
    (local.set $n (i32.load (i32.const 704)))
    (memory.copy (i32.const 20000) (i32.load (i32.const 700)) (local.get $n))
    (block $done (loop $next
      (br_if $done (i32.ge_u (i32.add (local.get $i) (i32.const 1)) (local.get $n)))
      (if (i32.and (i32.eq (i32.load8_u (i32.add (i32.const 20000) (local.get $i))) (i32.const 126))
                   (i32.eq (i32.load8_u (i32.add (i32.const 20001) (local.get $i))) (i32.const 126)))
        (then
          (i32.store8 (i32.add (i32.const 20000) (local.get $i)) (i32.const 13))
          (i32.store8 (i32.add (i32.const 20001) (local.get $i)) (i32.const 10))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (global.set $ctx (local.get $id))
    (drop (call $redis {cluster} (i32.const 20000) (local.get $n) (i32.const 708)))
    (i32.const 1))
  (func (export "proxy_on_redis_call_response") (param i32 i32) (param $status i32) (param $size i32)
    (drop (call $eff (global.get $ctx)))
    (i32.store (i32.const 700) (i32.const 0))
    (i32.store (i32.const 704) (i32.const 0))
    (if (local.get $size) (then
      (drop (call $buf (i32.const 9) (i32.const 0) (local.get $size) (i32.const 700) (i32.const 704)))))
    (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0)
      (i32.load (i32.const 700)) (i32.load (i32.const 704)) (i32.const 0) (i32.const 0) (i32.const -1))))"#,
        q = w.s("x-q"),
        cluster = w.s("redis"),
    );
    w.module(1, &funcs)
}

/// A RESP command as the prober's header carries it.
fn resp(parts: &[&str]) -> String {
    let mut out = format!("*{}~~", parts.len());
    for p in parts {
        out.push_str(&format!("${}~~{p}~~", p.len()));
    }
    out
}

#[tokio::test]
async fn a_modules_scripts_run_only_if_approved_and_only_on_its_own_keys() {
    let dir = std::env::temp_dir().join(format!("wharf-test.redis-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let set = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])";
    let reach = "return redis.call('GET', ARGV[1])";
    let hold = "for i = 1, 100000000 do redis.call('INCR', KEYS[1]) end; return 1";
    let mut trusted = Vec::new();
    for (name, text) in [("set", set), ("reach", reach), ("hold", hold)] {
        let path = dir.join(format!("{name}.lua"));
        std::fs::write(&path, text).unwrap();
        trusted.push(path.display().to_string());
    }
    let up = Upstream::start("up").await;
    let (gw, api, tenants) = gateway(&trusted, &up).await;
    let [a, b] = &tenants;
    let victim = format!("wharf:t:{b}:victim");
    let mut conn = redis().await;
    let () = redis::cmd("SET")
        .arg(&victim)
        .arg("b-secret")
        .query_async(&mut conn)
        .await
        .unwrap();
    let body = json!({"plugin_config": {}});
    upload_and_attach(&gw, &api, a, "api", "prober", redis_prober(), body).await;
    let host = format!("{a}.test");
    let ask = |parts: &[&str]| {
        let q = resp(parts);
        let gw = &gw;
        let host = host.clone();
        async move {
            let (status, body) = send(gw, &host, &[("x-q", &q)]).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };

    let own = ask(&["EVAL", "return 1", "0"]).await;
    assert!(
        own.starts_with("-ERR denied: script ") && own.contains("trusted_scripts"),
        "a script of the module's own never reaches Redis: {own}"
    );
    let ok = ask(&["EVAL", set, "1", "mine", "v1"]).await;
    assert_eq!(ok, "$2\r\nv1\r\n", "an approved script runs");
    for aimed in ["../victim", &format!("../{b}:victim"), &victim] {
        let r = ask(&["EVAL", set, "1", aimed, "pwned"]).await;
        assert_eq!(r, "$5\r\npwned\r\n", "{aimed}: written, but where?");
        let stored: Option<String> = redis::cmd("GET")
            .arg(format!("wharf:t:{a}:{aimed}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            stored.as_deref(),
            Some("pwned"),
            "{aimed}: under its own prefix"
        );
    }
    let reached = ask(&["EVAL", reach, "0", &victim]).await;
    assert!(
        reached.starts_with("-ERR denied: argument 1 of GET is not one of the script's KEYS"),
        "a key named in ARGV is refused inside Redis: {reached}"
    );
    let sha = wharf_plugins::capabilities::redis::sha1_hex(set.as_bytes());
    let by_sha = ask(&["EVALSHA", &sha, "1", "mine", "v2"]).await;
    assert_eq!(by_sha, "$2\r\nv2\r\n", "EVALSHA of an approved script");
    let unknown = ask(&["EVALSHA", &"0".repeat(40), "0"]).await;
    assert!(unknown.starts_with("-ERR denied: script "), "{unknown}");
    let mut many = vec!["EVAL", set, "17"];
    many.extend(std::iter::repeat_n("k", 18));
    let too_many = ask(&many).await;
    assert!(
        too_many.starts_with("-ERR invalid call: numkeys 17"),
        "{too_many}"
    );

    let started = std::time::Instant::now();
    let held = ask(&["EVAL", hold, "1", "n"]).await;
    let took = started.elapsed();
    assert!(
        held.starts_with("-ERR quota exceeded: the script ran past its 25 ms"),
        "{held}"
    );
    assert!(took.as_millis() < 1000, "Redis was held {took:?}");
    let victim_now: String = redis::cmd("GET")
        .arg(&victim)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        victim_now, "b-secret",
        "the other tenant's key never changed"
    );
    eprintln!("a script past its budget was stopped, request answered in {took:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
