//! A named upstream's DNS record changes while load runs through Wharf (8 clients each sending a
//! GET every 20 ms or so for 5 s; a real dnsmasq on loopback, 1 s TTL). Moved from upstream A
//! to B: B is used within the TTL and the resolver's refresh, A then gets no new request (counted
//! at the upstreams), and not one request fails during the switch. Rebound to 127.0.0.1, which
//! the egress policy refuses here: from then on every request is 502 upstream_forbidden and the
//! server listening there is never dialled. The measured times are printed (`--nocapture`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use crate::support::dns::Dns;
use crate::support::*;

/// Clients sending at once, each pausing between requests (a few hundred a second in all: the
/// machine is shared, and a drain is measured to a few ms as it is), and how long each load runs.
const CLIENTS: usize = 8;
const PAUSE: Duration = Duration::from_millis(20);
const LOAD: Duration = Duration::from_secs(5);
/// When the record changes, into the load.
const CHANGE_AT: Duration = Duration::from_secs(1);
/// The 1 s TTL, the resolver's turn after it and a loaded machine's slack.
const SWITCH_WITHIN: Duration = Duration::from_secs(3);

/// An upstream that notes when each request reached it.
struct Counted {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Counted {
    async fn start(addr: SocketAddr, name: &'static str) -> Counted {
        let arrivals = Arc::<Mutex<Vec<Instant>>>::default();
        let seen = arrivals.clone();
        let app = axum::Router::new().fallback(move || {
            seen.lock().push(Instant::now());
            async move { axum::Json(json!({ "upstream": name })) }
        });
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Counted { arrivals, task }
    }

    /// Arrivals at or after `t`: (how many, the last one).
    fn since(&self, t: Instant) -> (usize, Option<Instant>) {
        let a = self.arrivals.lock();
        let after: Vec<&Instant> = a.iter().filter(|&&at| at >= t).collect();
        (after.len(), after.last().map(|&&at| at))
    }

    fn first_since(&self, t: Instant) -> Option<Instant> {
        self.arrivals.lock().iter().find(|&&at| at >= t).copied()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request of the load: when it was sent, its status (0: no answer) and what answered it
/// (the upstream's name, or Wharf's error code).
struct Sample {
    sent: Instant,
    status: u16,
    from: String,
}

/// `CLIENTS` clients sending GETs through `proxy` until `LOAD` has passed (bounded: it stops by
/// itself), while the caller changes the record; every answer.
fn start_load(proxy: SocketAddr) -> tokio::task::JoinHandle<Vec<Sample>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let until = Instant::now() + LOAD;
    tokio::spawn(async move {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    while Instant::now() < until {
                        let sent = Instant::now();
                        let r = client
                            .get(format!("http://{proxy}/x"))
                            .header("Host", "load.test")
                            .send()
                            .await;
                        let (status, from) = match r {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let v: serde_json::Value = r.json().await.unwrap_or_default();
                                let from = v["upstream"].as_str().or(v["error"].as_str());
                                (status, from.unwrap_or("?").to_string())
                            }
                            Err(e) => (0, e.to_string()),
                        };
                        out.push(Sample { sent, status, from });
                        tokio::time::sleep(PAUSE).await;
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort_by_key(|s| s.sent);
        all
    })
}

/// Runs the load, changes the record to `to` `CHANGE_AT` into it: (the change's instant, answers).
async fn load_with_change(gw: &Wharf, dns: &Dns, to: &str) -> (Instant, Vec<Sample>) {
    let load = start_load(gw.proxy);
    tokio::time::sleep(CHANGE_AT).await;
    let changed = Instant::now();
    dns.set(&[("api.load.test", to)]);
    let samples = load.await.unwrap();
    (changed, samples)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_changed_under_load_moves_traffic_and_drains_the_old_target() {
    let port = free_addr().port();
    let a = Counted::start(format!("127.0.0.2:{port}").parse().unwrap(), "a").await;
    let b = Counted::start(format!("127.0.0.3:{port}").parse().unwrap(), "b").await;
    // Listening where the record is rebound last: it must never see a request.
    let refused = Counted::start(format!("127.0.0.1:{port}").parse().unwrap(), "refused").await;
    let dns = Dns::start(&[("api.load.test", "127.0.0.2")]);
    let (url, store) = fresh_store(StoreKind::Sqlite).await;
    // Only A's and B's addresses are allowed: 127.0.0.1 is loopback, refused as any would be.
    let gw = Wharf::start_configured(
        &url,
        &format!(
            "egress_allow = [\"127.0.0.2/32\", \"127.0.0.3/32\"]\n\
             [dns]\nservers = [\"{}\"]\nmin_ttl_seconds = 1\nretry_seconds = 1\n",
            dns.addr
        ),
        &[],
    )
    .await;
    let mut r = route("r", "/", &["127.0.0.1:1"]);
    r.upstreams[0].addr = format!("http://api.load.test:{port}");
    tenant_with_route(&store, "load", &["load.test"], r).await;
    gw.wait_for_version(store.version().await.unwrap().0).await;
    for _ in 0..100 {
        if gw.get("load.test", "/x").await.json["upstream"] == "a" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.get("load.test", "/x").await.json["upstream"], "a");

    // (a) A → B under load.
    let (moved, samples) = load_with_change(&gw, &dns, "127.0.0.3").await;
    let ended = samples.last().unwrap().sent;
    let failed: Vec<_> = samples.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the switch, first: {} {}",
        failed.len(),
        samples.len(),
        failed[0].status,
        failed[0].from
    );
    let first_b = b
        .first_since(moved)
        .expect("B got requests after the change");
    let (to_a, last_a) = a.since(moved);
    let drained = last_a.unwrap_or(moved);
    let after_drain = samples.iter().filter(|s| s.sent > drained).count();
    println!(
        "A -> B: {} requests ({:.0}/s) in {:?}; B's first request {} ms after the change; \
         A got {to_a} requests after the change, the last {} ms after it; then {after_drain} \
         requests in {} ms, all to B; 0 failed",
        samples.len(),
        samples.len() as f64 / LOAD.as_secs_f64(),
        LOAD,
        ms(first_b - moved),
        ms(drained - moved),
        ms(ended.saturating_duration_since(drained)),
    );
    assert!(first_b - moved <= SWITCH_WITHIN, "{:?}", first_b - moved);
    assert!(drained - moved <= SWITCH_WITHIN, "{:?}", drained - moved);
    // A was drained while load still ran, not merely when it stopped.
    assert!(
        ended.saturating_duration_since(drained) >= Duration::from_secs(1),
        "A's last request {:?} before the load ended",
        ended.saturating_duration_since(drained)
    );
    assert!(after_drain >= 20, "{after_drain}");
    assert!(
        samples
            .iter()
            .filter(|s| s.sent > drained)
            .all(|s| s.from == "b"),
        "after A's last request every answer is B's"
    );

    // (b) B → 127.0.0.1 under load: refused at connect from then on, never dialled.
    let (rebound, samples) = load_with_change(&gw, &dns, "127.0.0.1").await;
    let odd: Vec<_> = samples
        .iter()
        .filter(|s| {
            !((s.status == 200 && s.from == "b")
                || (s.status == 502 && s.from == "upstream_forbidden"))
        })
        .collect();
    assert!(
        odd.is_empty(),
        "{} answers neither B's nor upstream_forbidden, first: {} {}",
        odd.len(),
        odd[0].status,
        odd[0].from
    );
    let first_refused = samples
        .iter()
        .find(|s| s.status == 502)
        .expect("refused while the load ran");
    let last_served = samples.iter().rev().find(|s| s.status == 200).unwrap();
    let (to_b, last_b) = b.since(rebound);
    let refusals = samples.iter().filter(|s| s.status == 502).count();
    println!(
        "B -> 127.0.0.1: {} requests; the first refused (502 upstream_forbidden) was sent {} ms \
         after the change, the last served one {} ms after it; B got {to_b} requests after the \
         change, the last {} ms after it; {refusals} refused; 127.0.0.1 got {}",
        samples.len(),
        ms(first_refused.sent.saturating_duration_since(rebound)),
        ms(last_served.sent.saturating_duration_since(rebound)),
        ms(last_b.unwrap_or(rebound) - rebound),
        refused.arrivals.lock().len(),
    );
    assert!(first_refused.sent.saturating_duration_since(rebound) <= SWITCH_WITHIN);
    // Once refused, refused for good: nothing served after the first refusal was sent.
    assert!(
        last_served.sent < first_refused.sent + Duration::from_millis(100),
        "served {:?} after the first refusal",
        last_served.sent - first_refused.sent
    );
    assert!(refusals >= 20, "{refusals}");
    assert_eq!(
        refused.arrivals.lock().len(),
        0,
        "never dialled, health checks included"
    );
}
