//! The metrics catalog (docs/metrics.md) against the code, the Grafana dashboards and alert rules
//! against the catalog, and the live /metrics output through promtool.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

fn repo(path: &str) -> String {
    let root = crate::support::package_dir().join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("wharf_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end] == b'_'
                || bytes[end].is_ascii_digit())
        {
            end += 1;
        }
        let name = &text[start..end];
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        // Only metric names: the code also names crates (wharf_metrics, …).
        let is_crate = [
            "wharf_metrics",
            "wharf_tenancy",
            "wharf_plugins",
            "wharf_gateway",
        ]
        .contains(&base);
        if !is_crate && !base.starts_with("wharf_t_") {
            out.insert(base.to_string());
        }
        i = end.max(start + 1);
    }
    out
}

fn catalog() -> BTreeSet<String> {
    let doc = repo("docs/metrics.md");
    doc.lines()
        .filter(|l| l.starts_with("| `wharf_"))
        .map(|l| l.split('`').nth(1).unwrap().to_string())
        .collect()
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test installs the prometheus package)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn catalog_matches_the_code() {
    let code = metric_names(&repo("metrics/src/lib.rs"));
    let documented = catalog();
    let undocumented: Vec<_> = code.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&code).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/metrics.md: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/metrics.md lists metrics the code does not define: {stale:?}"
    );
}

#[test]
fn dashboards_and_alerts_use_only_cataloged_metrics() {
    let known = catalog();
    for file in [
        "deploy/grafana/wharf-overview.json",
        "deploy/grafana/wharf-tenant.json",
    ] {
        let dash: serde_json::Value =
            serde_json::from_str(&repo(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            dash["uid"].is_string()
                && dash["title"].is_string()
                && dash["schemaVersion"].is_number(),
            "{file}"
        );
        let panels = dash["panels"].as_array().expect("panels");
        assert!(panels.len() >= 6, "{file}");
        for p in panels {
            let targets = p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{file}: panel without targets"));
            for t in targets {
                let expr = t["expr"].as_str().expect("expr");
                for name in metric_names(expr) {
                    assert!(
                        known.contains(&name),
                        "{file}: panel {:?} queries {name}, which is not in the catalog",
                        p["title"]
                    );
                }
            }
        }
    }
    let tenant_dash: serde_json::Value =
        serde_json::from_str(&repo("deploy/grafana/wharf-tenant.json")).unwrap();
    assert!(tenant_dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "tenant"));
    for name in metric_names(&repo("deploy/prometheus/alerts.yml")) {
        assert!(
            known.contains(&name),
            "alerts.yml uses {name}, which is not in the catalog"
        );
    }
    let root = crate::support::package_dir().join("../deploy/prometheus");
    let (ok, out) = promtool(
        &["check", "rules", root.join("alerts.yml").to_str().unwrap()],
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = promtool(
        &[
            "check",
            "config",
            root.join("prometheus.yml").to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_metrics_pass_promtool_and_tenant_labels_are_capped() {
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    let up = Upstream::start("up").await;
    for t in ["t1", "t2", "t3"] {
        store
            .create_tenant(t, t, &[&format!("{t}.test")])
            .await
            .unwrap();
        fast_health_checks(&store, t).await;
        let mut r = route("api", "/", &[&up.target(), &dead_addr()]);
        r.health_check = Some(wharf_tenancy::HealthCheck {
            kind: wharf_tenancy::HealthCheckKind::Tcp,
            path: "/".into(),
            interval_ms: 100,
        });
        store.put_route(t, r).await.unwrap();
    }
    let gw = Wharf::start_configured(&url, "metrics_tenant_label_cap = 2", &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    for t in ["t1", "t2", "t3"] {
        for _ in 0..3 {
            gw.get(&format!("{t}.test"), "/").await;
        }
    }
    gw.get("nobody.test", "/").await;
    let m = gw
        .wait_metric(
            r#"wharf_request_duration_seconds_count{tenant="_other"}"#,
            3.0,
        )
        .await;
    assert_eq!(
        metric_value(
            &m,
            r#"wharf_requests_total{code="200",route="api",tenant="t1"}"#
        ),
        3.0
    );
    assert_eq!(
        metric_value(
            &m,
            r#"wharf_requests_total{code="200",route="api",tenant="_other"}"#
        ),
        3.0,
        "the third tenant folds into _other"
    );
    assert!(!m.contains(r#"tenant="t3""#));
    assert!(m.contains("wharf_gateway_duration_seconds_bucket"));
    assert!(m.contains(r#"wharf_bytes_total{direction="out",tenant="t1"}"#));
    assert!(m.contains("wharf_upstream_target_healthy{"), "{m}");
    let (ok, out) = promtool(&["check", "metrics"], Some(&m));
    assert!(ok, "promtool check metrics:\n{out}");
}
