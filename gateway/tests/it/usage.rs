//! The console's usage history: a node's own per-minute counters, and the whole fleet's from a
//! real Prometheus scraping two nodes when `usage_prometheus_url` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::api::{Api, OP};
use crate::support::*;
use reqwest::Method;
use serde_json::Value;

async fn history(api: &Api) -> Value {
    let (s, v) = api
        .call(Method::GET, "/v1/tenants/a/usage/history", Some(OP), None)
        .await;
    assert!(s.is_success(), "{v}");
    v
}

fn total(v: &Value) -> f64 {
    v["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["requests"].as_f64().unwrap())
        .sum()
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_history_per_node_and_fleet_wide_from_prometheus() {
    let (url, store) = fresh_store(StoreKind::Postgres).await;
    let up = Upstream::start("up").await;
    store.create_tenant("a", "A", &["a.test"]).await.unwrap();
    store
        .put_route("a", route("all", "/", &[&up.target()]))
        .await
        .unwrap();
    let prom_addr = free_addr();
    let n1 = Wharf::start_configured(
        &url,
        &format!("operator_token = \"{OP}\"\nusage_prometheus_url = \"http://{prom_addr}\""),
        &[],
    )
    .await;
    let n2 = Wharf::start_configured(&url, &format!("operator_token = \"{OP}\""), &[]).await;

    // A node's own history: its requests, by code, with latency, in the current minute.
    for _ in 0..5 {
        assert_eq!(n2.get("a.test", "/").await.status, 200);
    }
    n2.get("a.test", "/nowhere-but-routed").await;
    let own = history(&Api::new(&n2)).await;
    assert_eq!(own["source"], "this node");
    let last = own["minutes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["requests"], 6.0, "{own}");
    assert_eq!(last["by_code"]["200"], 6.0);
    assert!(last["p50_ms"].as_f64().unwrap() > 0.0);

    // Prometheus scraping both nodes every second (with the operator token).
    let dir = std::env::temp_dir().join(format!("wharf-prom-{}", prom_addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: wharf\n    authorization: {{credentials: {OP}}}\n    static_configs:\n      - targets: ['{}', '{}']\n",
            n1.admin, n2.admin
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (scripts/test installs the prometheus package)"),
    );
    // Both nodes' series are in Prometheus before the measured traffic (increase() counts from
    // a first sample).
    n1.get("a.test", "/").await;
    let series =
        format!("http://{prom_addr}/api/v1/query?query=wharf_requests_total%7Btenant%3D%22a%22%7D");
    for _ in 0..120 {
        let seen = match reqwest::get(&series).await {
            Ok(r) => r.json::<Value>().await.ok(),
            Err(_) => None,
        };
        if seen.is_some_and(|v| v["data"]["result"].as_array().is_some_and(|r| r.len() == 2)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..20 {
        n1.get("a.test", "/").await;
        n2.get("a.test", "/").await;
    }
    let api = Api::new(&n1);
    let mut fleet = Value::Null;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        fleet = history(&api).await;
        if fleet["source"] == "prometheus" && total(&fleet) >= 35.0 {
            break;
        }
    }
    assert_eq!(fleet["source"], "prometheus", "{fleet}");
    // n1 alone served 21 of them: more means n2's were counted too (increase() extrapolates, so
    // the sum is not exact).
    assert!(total(&fleet) >= 35.0, "{}", total(&fleet));
    let minutes = fleet["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 61);
    assert!(
        minutes.iter().any(|m| m["p99_ms"].as_f64().is_some()),
        "{fleet}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
