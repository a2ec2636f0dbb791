//! A route's targets as its balancer discovers them: literal addresses as written, names as the
//! resolver last answered (every address a weighted backend). Every address passes the egress
//! policy here, so a name that resolves to a forbidden address (rebinding to loopback, the
//! metadata service, …) is never dialled nor health-checked; the proxy checks the dialled
//! address again at connect.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_load_balancing::discovery::ServiceDiscovery;
use pingora_load_balancing::Backend;
use wharf_plugins::capabilities::networking::{Answer, EgressError, EgressPolicy, Name, Resolver};
use wharf_tenancy::target::{TargetAddr, TargetHost};
use wharf_tenancy::Route;

enum Host {
    Ip(IpAddr),
    Name(Arc<Name>),
}

struct Target {
    host: Host,
    port: u16,
    weight: usize,
}

/// The name a backend was resolved from: its TLS server name unless the route sets one.
#[derive(Clone, Debug)]
pub struct TargetName(pub Arc<str>);

/// Why a route has no backend to dial, as the last discovery saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Empty {
    /// Every address there is was refused by the egress policy.
    Forbidden(EgressError),
    /// A name the route needs does not resolve.
    Unresolvable(String),
}

pub struct Targets {
    route: String,
    targets: Vec<Target>,
    egress: Arc<EgressPolicy>,
    /// Set by each discovery that found nothing to dial.
    empty: Mutex<Option<Empty>>,
}

impl Targets {
    pub fn new(route: &Route, egress: &Arc<EgressPolicy>, resolver: &Resolver) -> Targets {
        let targets = route
            .upstreams
            .iter()
            .filter_map(|u| {
                let parsed = TargetAddr::parse(&u.addr)
                    .inspect_err(|e| tracing::warn!(route = %route.id, "skipping upstream: {e}"))
                    .ok()?;
                let host = match parsed.host {
                    TargetHost::Ip(ip) => Host::Ip(ip),
                    TargetHost::Name(name) => Host::Name(resolver.watch(&name)),
                };
                Some(Target {
                    host,
                    port: parsed.port,
                    weight: u.weight as usize,
                })
            })
            .collect();
        Targets {
            route: route.id.clone(),
            targets,
            egress: egress.clone(),
            empty: Mutex::new(None),
        }
    }

    /// The names this route waits on.
    pub fn names(&self) -> Vec<Arc<Name>> {
        self.targets
            .iter()
            .filter_map(|t| match &t.host {
                Host::Name(n) => Some(n.clone()),
                Host::Ip(_) => None,
            })
            .collect()
    }

    /// Why the balancer had nothing to offer at its last discovery, if it had nothing.
    pub fn empty(&self) -> Option<Empty> {
        self.empty.lock().clone()
    }

    /// Every address to dial, with its target's weight; records why there is none.
    fn backends(&self) -> BTreeSet<Backend> {
        let mut set = BTreeSet::new();
        let (mut refused, mut unresolved) = (None, None);
        for t in &self.targets {
            let name: Option<Arc<str>> = match &t.host {
                Host::Name(n) => Some(n.host.as_str().into()),
                Host::Ip(_) => None,
            };
            let addrs: Vec<IpAddr> = match &t.host {
                Host::Ip(ip) => vec![*ip],
                Host::Name(name) => {
                    let answer = name.answer();
                    // The resolver's own error stays in the node's log, not in answers.
                    if matches!(answer, Answer::Failed(_) | Answer::Pending) {
                        unresolved = Some(name.host.clone());
                    }
                    answer.addrs().to_vec()
                }
            };
            for ip in addrs {
                let addr = SocketAddr::new(ip, t.port);
                if let Err(why) = self.egress.check(addr) {
                    tracing::warn!(route = %self.route, %addr, "upstream refused by the egress policy: {why}");
                    refused = Some(why);
                    continue;
                }
                // An address formatted by the standard library always parses back.
                if let Ok(mut b) = Backend::new_with_weight(&addr.to_string(), t.weight.max(1)) {
                    if let Some(name) = &name {
                        b.ext.insert(TargetName(name.clone()));
                    }
                    set.insert(b);
                }
            }
        }
        *self.empty.lock() = match (set.is_empty(), unresolved, refused) {
            (false, _, _) => None,
            (true, Some(name), _) => Some(Empty::Unresolvable(name)),
            (true, None, Some(why)) => Some(Empty::Forbidden(why)),
            (true, None, None) => None,
        };
        set
    }
}

/// The balancer's discovery: the targets it shares with the compiled route.
pub struct Discovery(pub Arc<Targets>);

#[async_trait]
impl ServiceDiscovery for Discovery {
    async fn discover(&self) -> pingora_core::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok((self.0.backends(), HashMap::new()))
    }
}
