//! What a plugin's Redis command costs Redis: one round trip, the wrapper script named by its
//! digest, on the one connection all the tenant's calls share; and a connection that went bad
//! is replaced. Against a private Redis, whose command counts (`INFO commandstats`) and clients
//! no other test disturbs.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::redis;
use wharf_plugins::capabilities::redis::{Redis, RedisValue};
use wharf_plugins::capabilities::sql::SqlBackend;
use wharf_plugins::capabilities::{HostError, DEFAULT_RESULT_BUDGET_BYTES};
use wharf_tenancy::Quotas;

use crate::backends::tenant_id;

/// Calls per command since Redis started, e.g. `ping`, `eval`, `evalsha`.
async fn calls(admin: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let n = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), n))
        })
        .collect()
}

/// Clients connected to Redis, the test's own admin connection left out.
async fn clients(admin: &mut redis::aio::MultiplexedConnection) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(admin)
        .await
        .unwrap();
    list.lines().count() - 1
}

fn more(before: &HashMap<String, u64>, after: &HashMap<String, u64>, name: &str) -> u64 {
    after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_command_is_one_round_trip_and_a_bad_connection_is_replaced() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(wharf_tenancy::test_support::spawn_redis(port));
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut admin = None;
    for _ in 0..50 {
        if let Ok(c) = client.get_multiplexed_async_connection().await {
            admin = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut admin = admin.expect("the private Redis answers");
    let caps = wharf_plugins::test_support::capabilities(
        Some(url),
        SqlBackend::Disabled,
        DEFAULT_RESULT_BUDGET_BYTES,
    );
    let t = caps.tenant(&tenant_id("pool"), &Quotas::default());
    let r = t.get::<Redis>().await.unwrap();
    let incr = || r.command("INCR", vec![b"n".to_vec()]);
    incr().await.unwrap();

    // 64 commands at once share the tenant's one connection (within redis_max_connections = 4
    // by default), each answered.
    let all = futures_util::future::join_all((0..64).map(|_| incr())).await;
    assert!(
        all.iter().all(|r| matches!(r, Ok(RedisValue::Int(_)))),
        "{all:?}"
    );
    assert_eq!(incr().await.unwrap(), RedisValue::Int(66));
    assert_eq!(
        clients(&mut admin).await,
        1,
        "the tenant's connections besides the test's"
    );

    // Back to back: each command is one EVALSHA; no check of the connection, no script text.
    let before = calls(&mut admin).await;
    for _ in 0..50 {
        incr().await.unwrap();
    }
    let after = calls(&mut admin).await;
    assert_eq!(more(&before, &after, "evalsha"), 50, "{after:?}");
    assert_eq!(more(&before, &after, "eval"), 0, "{after:?}");
    assert_eq!(more(&before, &after, "ping"), 0, "{after:?}");
    assert_eq!(incr().await.unwrap(), RedisValue::Int(117));

    // Redis forgot the script: the text is sent once, then the digest again.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let before = calls(&mut admin).await;
    incr().await.unwrap();
    incr().await.unwrap();
    let after = calls(&mut admin).await;
    assert_eq!(more(&before, &after, "eval"), 1, "{after:?}");
    // The refused digest counts as a call.
    assert_eq!(more(&before, &after, "evalsha"), 2, "{after:?}");

    // Redis closed the tenant's connections: at most the next command fails, on the dead
    // connection, and the one after is served on a new one.
    redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let Err(e) = incr().await {
        assert_eq!(e, HostError::BackendUnavailable);
    }
    let served = incr().await;
    assert!(
        matches!(served, Ok(RedisValue::Int(_))),
        "served on a new connection: {served:?}"
    );
    assert_eq!(
        clients(&mut admin).await,
        1,
        "the dead connection is not kept"
    );

    // Redis stops answering (every client paused 1.5 s): the command ends as a timeout after
    // about a second, not when Redis wakes; the one after Redis is back is served.
    redis::cmd("CLIENT")
        .arg(&["PAUSE", "1500", "ALL"][..])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(incr().await, Err(HostError::Timeout));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(1400),
        "{waited:?}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let served = incr().await;
    assert!(
        matches!(served, Ok(RedisValue::Int(_))),
        "after the pause: {served:?}"
    );

    // Idle past the freshness window: checked with a PING before it serves.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = calls(&mut admin).await;
    incr().await.unwrap();
    let after = calls(&mut admin).await;
    assert_eq!(more(&before, &after, "ping"), 1, "{after:?}");
}

/// A Redis address that accepts TCP connections and never answers (a listener that never
/// accepts: the kernel completes the handshake, nothing replies): 16 commands at once fail
/// after one connect timeout, not after sixteen in turn.
#[tokio::test]
async fn commands_waiting_for_an_unreachable_redis_fail_together() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let caps = wharf_plugins::test_support::capabilities(
        Some(url),
        SqlBackend::Disabled,
        DEFAULT_RESULT_BUDGET_BYTES,
    );
    let t = caps.tenant(&tenant_id("silent"), &Quotas::default());
    let r = t.get::<Redis>().await.unwrap();
    let started = std::time::Instant::now();
    let all =
        futures_util::future::join_all((0..16).map(|_| r.command("INCR", vec![b"n".to_vec()])))
            .await;
    let waited = started.elapsed();
    assert!(
        all.iter().all(|r| *r == Err(HostError::BackendUnavailable)),
        "{all:?}"
    );
    assert!(waited < Duration::from_millis(3500), "{waited:?}");
}

/// The private Redis, stopped however the test ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
