//! Upstream names, resolved off the request path. One thread (`wharf-dns`, its own runtime)
//! keeps every name some route uses resolved: at first sight, again when its answer's TTL runs
//! out (clamped), sooner after a failure. A name that stops resolving keeps its last good
//! addresses for a bounded time (`stale_seconds`), then has none. Readers see the latest
//! answer without waiting; a change bumps a generation others can wait on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use wharf_metrics::Metrics;

use crate::capabilities::SettingsError;

/// `[dns]` in the bootstrap file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSettings {
    /// Name servers (`ip` or `ip:port`); empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<String>,
    /// An answer is used at least this long, whatever its TTL…
    pub min_ttl_seconds: u64,
    /// …and asked again after at most this long.
    pub max_ttl_seconds: u64,
    /// A name that stops resolving keeps its last good addresses this long.
    pub stale_seconds: u64,
    /// After a failure, asked again this soon.
    pub retry_seconds: u64,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            min_ttl_seconds: 1,
            max_ttl_seconds: 300,
            stale_seconds: 300,
            retry_seconds: 2,
        }
    }
}

/// What a name resolves to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Not asked yet.
    Pending,
    Resolved(Arc<[IpAddr]>),
    /// The last lookups failed; the last good addresses are kept until `stale_seconds` pass.
    Stale(Arc<[IpAddr]>),
    /// Nothing to use: the name does not resolve (the error says why).
    Failed(String),
}

impl Answer {
    pub fn addrs(&self) -> &[IpAddr] {
        match self {
            Answer::Resolved(a) | Answer::Stale(a) => a,
            Answer::Pending | Answer::Failed(_) => &[],
        }
    }
}

/// One name kept resolved while anything holds it.
pub struct Name {
    pub host: String,
    state: Mutex<NameState>,
}

struct NameState {
    answer: Answer,
    next: Instant,
    last_good: Option<Instant>,
}

impl Name {
    pub fn answer(&self) -> Answer {
        self.state.lock().answer.clone()
    }
}

pub struct Resolver {
    shared: Arc<Shared>,
}

struct Shared {
    names: Mutex<HashMap<String, Weak<Name>>>,
    wake: Notify,
    generation: watch::Sender<u64>,
    settings: DnsSettings,
    metrics: Arc<Metrics>,
}

impl Resolver {
    /// Starts the resolver thread.
    pub fn start(
        settings: DnsSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Resolver>, SettingsError> {
        let bad = |reason: String| SettingsError {
            capability: "networking",
            reason,
        };
        let resolver = build(&settings).map_err(&bad)?;
        let shared = Arc::new(Shared {
            names: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            generation: watch::channel(0).0,
            settings,
            metrics,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start the resolver's runtime: {e}")))?;
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("wharf-dns".into())
            .spawn(move || runtime.block_on(refresh(weak, resolver)))
            .map_err(|e| bad(format!("cannot start the resolver thread: {e}")))?;
        Ok(Arc::new(Resolver { shared }))
    }

    /// The name, kept resolved for as long as the handle (or another for it) lives.
    pub fn watch(&self, host: &str) -> Arc<Name> {
        let mut names = self.shared.names.lock();
        if let Some(name) = names.get(host).and_then(Weak::upgrade) {
            return name;
        }
        let name = Arc::new(Name {
            host: host.to_string(),
            state: Mutex::new(NameState {
                answer: Answer::Pending,
                next: Instant::now(),
                last_good: None,
            }),
        });
        names.insert(host.to_string(), Arc::downgrade(&name));
        drop(names);
        self.shared.wake.notify_one();
        name
    }

    /// Changes each time an answer changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// Waits until none of `names` is still pending, or `patience` has passed.
    pub async fn settled(&self, names: &[Arc<Name>], patience: Duration) {
        let mut changes = self.changes();
        let _ = tokio::time::timeout(patience, async {
            while names.iter().any(|n| n.answer() == Answer::Pending) {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        // The thread holds only a weak reference: waking it lets it see it is done.
        self.shared.wake.notify_one();
    }
}

fn build(settings: &DnsSettings) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if settings.servers.is_empty() {
        match TokioResolver::builder(provider.clone()) {
            Ok(b) => b,
            // Names then fail to resolve, each saying so; literal targets work as ever.
            Err(e) => {
                tracing::warn!(
                    "cannot read the system's DNS configuration ({e}); set [dns] servers"
                );
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![]),
                    provider,
                )
            }
        }
    } else {
        let mut servers = Vec::new();
        for s in &settings.servers {
            let (ip, port) = match s.parse::<std::net::SocketAddr>() {
                Ok(a) => (a.ip(), a.port()),
                Err(_) => (
                    s.parse::<IpAddr>()
                        .map_err(|_| format!("[dns] servers: {s:?} is not an ip or ip:port"))?,
                    53,
                ),
            };
            let mut server = NameServerConfig::udp_and_tcp(ip);
            for c in &mut server.connections {
                c.port = port;
            }
            servers.push(server);
        }
        TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    let opts = builder.options_mut();
    // Wharf keeps its own answers (with its clamps and staleness): no second cache under it.
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    builder
        .build()
        .map_err(|e| format!("cannot build the resolver: {e}"))
}

/// Lookups in flight at once: a name whose server answers slowly (or never) waits its timeout
/// without holding up the others' refreshes.
const CONCURRENT_LOOKUPS: usize = 32;

/// A lookup is under way: not due again until it records its answer (which sets the real turn).
const IN_FLIGHT: Duration = Duration::from_secs(3600);

/// The resolver thread: starts the lookups that are due, then sleeps until the next is due, a
/// new name arrives or a lookup ends; ends when the `Resolver` is gone.
async fn refresh(shared: Weak<Shared>, resolver: TokioResolver) {
    let resolver = Arc::new(resolver);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_LOOKUPS));
    loop {
        let Some(s) = shared.upgrade() else { return };
        let now = Instant::now();
        let mut due = Vec::new();
        let mut next = now + Duration::from_secs(60);
        {
            let mut names = s.names.lock();
            names.retain(|_, w| w.strong_count() > 0);
            s.metrics.dns_names.set(names.len() as i64);
            for name in names.values().filter_map(Weak::upgrade) {
                let mut st = name.state.lock();
                if st.next <= now {
                    st.next = now + IN_FLIGHT;
                    drop(st);
                    due.push(name);
                } else {
                    next = next.min(st.next);
                }
            }
        }
        for name in due {
            let (resolver, slots) = (resolver.clone(), slots.clone());
            let weak = Arc::downgrade(&s);
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                let result = resolver.lookup_ip(name.host.as_str()).await;
                if let Some(s) = weak.upgrade() {
                    record(&s, &name, result);
                    // Its next turn is set: the loop looks again.
                    s.wake.notify_one();
                }
            });
        }
        // Holding `s` while asleep is fine: dropping the `Resolver` wakes this loop, whose next
        // turn finds it gone.
        tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = s.wake.notified() => {}
        }
    }
}

fn record(
    s: &Shared,
    name: &Name,
    result: Result<hickory_resolver::lookup_ip::LookupIp, hickory_resolver::net::NetError>,
) {
    let cfg = &s.settings;
    let now = Instant::now();
    let mut st = name.state.lock();
    let (answer, wait, outcome) = match result {
        Ok(lookup) => {
            let mut addrs: Vec<IpAddr> = lookup.iter().collect();
            addrs.sort();
            addrs.dedup();
            // A tenant's name may answer thousands of records: each address is a backend the
            // node dials and probes, so a name counts as this many targets at most (the quotas
            // count it so too).
            addrs.truncate(wharf_tenancy::target::MAX_ADDRESSES_PER_NAME);
            let ttl = lookup.valid_until().saturating_duration_since(now).clamp(
                Duration::from_secs(cfg.min_ttl_seconds),
                Duration::from_secs(cfg.max_ttl_seconds.max(cfg.min_ttl_seconds)),
            );
            st.last_good = Some(now);
            (Answer::Resolved(addrs.into()), ttl, "ok")
        }
        Err(e) => {
            let retry = Duration::from_secs(cfg.retry_seconds.max(1));
            let stale_until = st
                .last_good
                .map(|t| t + Duration::from_secs(cfg.stale_seconds));
            match (&st.answer, stale_until) {
                (Answer::Resolved(a) | Answer::Stale(a), Some(until)) if now < until => {
                    (Answer::Stale(a.clone()), retry, "stale")
                }
                _ => (Answer::Failed(e.to_string()), retry, "failed"),
            }
        }
    };
    s.metrics
        .dns_resolutions_total
        .with_label_values(&[outcome])
        .inc();
    st.next = now + wait;
    if st.answer != answer {
        if let Answer::Failed(why) = &answer {
            tracing::warn!(name = %name.host, "upstream name does not resolve: {why}");
        }
        st.answer = answer;
        drop(st);
        s.generation.send_modify(|g| *g += 1);
    }
}
