//! Each node's ACME worker, on the control plane's runtime: it keeps the challenge answers in
//! memory fresh, and takes due orders (first certificates, retries, renewals) whose lease no
//! other node holds. Orders are bounded per tenant and per fleet per hour (over a cap an order
//! is postponed, not failed), run a few at a time per node, retry with exponential backoff and
//! renew at about two thirds of the certificate's lifetime, with jitter so a fleet's
//! certificates issued together do not all renew in the same minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use instant_acme::Account;
use rand::Rng;
use tokio::sync::{Mutex, Semaphore};
use wharf_metrics::Metrics;
use wharf_tenancy::store::{now_ms, ISSUED_PREFIX};
use wharf_tenancy::{AcmeHostname, HostPattern, Store, TlsCertificate};

use super::challenges::Challenges;
use super::{client, order, AcmeSettings};
use crate::tls::seal::{self, KeySealer};
use crate::tls::validate;

/// How long a node holds an order: longer than an order can take (account, validation and
/// issuance, each bounded), so a node that died mid-order lets another take it after this.
const LEASE_MS: i64 = 5 * 60 * 1000;

/// An order over an hourly cap waits this long before it is looked at again.
const POSTPONE_MS: i64 = 5 * 60 * 1000;

/// A name an uploaded certificate serves is looked at again after this long.
const UPLOADED_RECHECK_MS: i64 = 24 * 3600 * 1000;

/// An uploaded certificate expiring sooner than this no longer stops an order (the issued one
/// is served only once the upload is gone or expired, but it is ready).
const UPLOADED_MARGIN_MS: i64 = 14 * 24 * 3600 * 1000;

/// What a tenant reads when the fleet's account cannot be used (the detail is logged).
const ACCOUNT_UNAVAILABLE: &str =
    "the fleet cannot reach its ACME CA or use its account now; retried later";

/// With `all_hostnames`, new names are enrolled every this many checks.
const ENROLL_EVERY_CHECKS: u32 = 10;

pub struct AcmeWorker {
    settings: AcmeSettings,
    directory: String,
    sealer: Arc<KeySealer>,
    metrics: Arc<Metrics>,
    challenges: Arc<Challenges>,
    node: String,
    /// Loaded (or created) on the first order, then reused.
    account: Mutex<Option<Account>>,
}

impl AcmeWorker {
    /// `None` when the operator set no directory: this node orders nothing (it still
    /// answers challenges only if it runs a worker, so every node of a fleet should have the
    /// same `[acme]`).
    pub fn new(
        settings: &AcmeSettings,
        sealer: Arc<KeySealer>,
        metrics: Arc<Metrics>,
        challenges: Arc<Challenges>,
        node: String,
    ) -> Option<AcmeWorker> {
        let directory = settings.directory_url.clone()?;
        for outcome in ["issued", "failed", "postponed"] {
            metrics.acme_orders_total.with_label_values(&[outcome]);
        }
        Some(AcmeWorker {
            settings: settings.clone(),
            directory,
            sealer,
            metrics,
            challenges,
            node,
            account: Mutex::new(None),
        })
    }

    /// Runs on the current runtime until it ends.
    pub fn spawn(self, store: Store) {
        let me = Arc::new(self);
        tokio::spawn(async move { me.run(store).await });
    }

    async fn run(self: Arc<Self>, store: Store) {
        let slots = Arc::new(Semaphore::new(self.settings.max_concurrent_orders.max(1)));
        let check_every = Duration::from_millis(self.settings.check_interval_ms.max(10));
        let mut refresh = tokio::time::interval(self.refresh_every());
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_check: Option<Instant> = None;
        let mut checks = 0u32;
        loop {
            refresh.tick().await;
            match store.acme_challenges().await {
                Ok(rows) => self.challenges.replace(rows),
                Err(e) => tracing::warn!("cannot read ACME challenge answers: {e}"),
            }
            if self.settings.place_orders && last_check.is_none_or(|t| t.elapsed() >= check_every) {
                last_check = Some(Instant::now());
                if self.settings.all_hostnames && checks.is_multiple_of(ENROLL_EVERY_CHECKS) {
                    if let Err(e) = store.acme_enroll_all().await {
                        tracing::warn!("cannot enroll hostnames for ACME: {e}");
                    }
                }
                checks = checks.wrapping_add(1);
                self.take_due(&store, &slots).await;
            }
        }
    }

    fn refresh_every(&self) -> Duration {
        Duration::from_millis(self.settings.challenge_refresh_ms.max(10))
    }

    /// Starts the due orders this node has room for and wins the lease of.
    async fn take_due(self: &Arc<Self>, store: &Store, slots: &Arc<Semaphore>) {
        let room = slots.available_permits() as i64;
        if room == 0 {
            return;
        }
        let due = match store.acme_due(room).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot read due ACME orders: {e}");
                return;
            }
        };
        for h in due {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break;
            };
            match store
                .take_acme_lease(&h.hostname, &self.node, now_ms() + LEASE_MS)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(host = %h.hostname, "cannot take the ACME lease: {e}");
                    continue;
                }
            }
            let me = self.clone();
            let store = store.clone();
            tokio::spawn(async move {
                me.order(&store, &h).await;
                drop(slot);
            });
        }
    }

    /// One order for `h`, within the caps; its outcome recorded in the store.
    async fn order(&self, store: &Store, h: &AcmeHostname) {
        match self.over_cap(store, h).await {
            Ok(None) => {}
            Ok(Some((why, retry))) => {
                self.metrics
                    .acme_orders_total
                    .with_label_values(&["postponed"])
                    .inc();
                if let Err(e) = store.acme_failed(&h.hostname, &why, false, retry).await {
                    tracing::warn!(host = %h.hostname, "cannot postpone the ACME order: {e}");
                }
                return;
            }
            Err(e) => {
                self.failed(store, h, &format!("order caps: {e}")).await;
                return;
            }
        }
        if let Err(e) = store.record_acme_order(&h.tenant, &h.hostname).await {
            self.failed(store, h, &e.to_string()).await;
            return;
        }
        let issued = match self.account(store).await {
            Ok(account) => order::issue(
                &account,
                store,
                &self.challenges,
                &h.hostname,
                self.settings.challenge,
                2 * self.refresh_every(),
            )
            .await
            .map_err(|e| e.to_string()),
            // The fleet's side (its CA bundle, account, the directory's address): the operator's
            // to read in the log, not the tenant's.
            Err(e) => {
                tracing::warn!(host = %h.hostname, "ACME account unavailable: {e}");
                Err(ACCOUNT_UNAVAILABLE.to_string())
            }
        };
        match issued.and_then(|i| self.seal(h, &i)) {
            Ok(cert) => self.issued(store, h, &cert).await,
            Err(e) => self.failed(store, h, &e).await,
        }
    }

    /// Why the order must wait, if a cap is reached or the tenant's own certificate serves
    /// the name (it wins, so an order would only spend the CA's limits).
    async fn over_cap(
        &self,
        store: &Store,
        h: &AcmeHostname,
    ) -> Result<Option<(String, i64)>, wharf_tenancy::StoreError> {
        let tenant = store.tenant(&h.tenant).await?;
        let now = now_ms();
        if let Some(own) = tenant.certificates.iter().find(|c| {
            !c.name.starts_with(ISSUED_PREFIX)
                && c.hostnames.contains(&h.hostname)
                && c.not_after_ms > now + UPLOADED_MARGIN_MS
        }) {
            return Ok(Some((
                format!(
                    "not ordered: the uploaded certificate {:?} serves this name",
                    own.name
                ),
                now + UPLOADED_RECHECK_MS,
            )));
        }
        let postpone = now + POSTPONE_MS;
        let (tenant_orders, fleet_orders) = store.acme_orders_this_hour(&h.tenant).await?;
        let tenant_cap = tenant.quotas.config.acme_orders_per_hour;
        if tenant_orders >= i64::from(tenant_cap) {
            return Ok(Some((
                format!(
                    "postponed: the tenant's acme_orders_per_hour ({tenant_cap}) is used this hour"
                ),
                postpone,
            )));
        }
        let fleet_cap = self.settings.orders_per_hour;
        if fleet_orders >= i64::from(fleet_cap) {
            return Ok(Some((
                format!(
                    "postponed: the fleet's acme.orders_per_hour ({fleet_cap}) is used this hour"
                ),
                postpone,
            )));
        }
        Ok(None)
    }

    async fn account(&self, store: &Store) -> Result<Account, client::ClientError> {
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let a = client::account(store, &self.sealer, &self.settings, &self.directory).await?;
        *slot = Some(a.clone());
        Ok(a)
    }

    /// The issued chain checked as an upload would be, and its key sealed for its row.
    fn seal(&self, h: &AcmeHostname, i: &order::Issued) -> Result<TlsCertificate, String> {
        let owned = [HostPattern::Exact(h.hostname.clone())];
        let v = validate::validate(&i.chain_pem, &i.key_pem, &owned, now_ms())
            .map_err(|e| format!("the CA's certificate is not servable: {e}"))?;
        let name = format!("{ISSUED_PREFIX}{}", h.hostname);
        let key_sealed = self
            .sealer
            .seal(&seal::context(&h.tenant, &name), i.key_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(TlsCertificate {
            name,
            chain_pem: i.chain_pem.clone(),
            hostnames: v.hostnames,
            not_after_ms: v.not_after_ms,
            fingerprint: v.fingerprint,
            updated_at_ms: 0,
            key_sealed,
        })
    }

    async fn issued(&self, store: &Store, h: &AcmeHostname, cert: &TlsCertificate) {
        let renew_at = renew_at(now_ms(), cert.not_after_ms, &mut rand::rng());
        match store
            .acme_issued(&h.tenant, &h.hostname, cert, renew_at)
            .await
        {
            Ok(Some(version)) => {
                self.metrics
                    .acme_orders_total
                    .with_label_values(&["issued"])
                    .inc();
                tracing::info!(tenant = %h.tenant, host = %h.hostname, version, renew_at,
                    "ACME certificate issued");
            }
            // The name went while the order ran: its certificate is dropped with it.
            Ok(None) => tracing::info!(host = %h.hostname, "ACME order done for a name gone"),
            Err(e) => {
                self.failed(store, h, &format!("storing the certificate: {e}"))
                    .await
            }
        }
    }

    async fn failed(&self, store: &Store, h: &AcmeHostname, error: &str) {
        self.metrics
            .acme_orders_total
            .with_label_values(&["failed"])
            .inc();
        tracing::warn!(tenant = %h.tenant, host = %h.hostname, "ACME order failed: {error}");
        let wait = backoff(&self.settings, h.attempts, &mut rand::rng());
        let retry = now_ms() + wait.as_millis() as i64;
        if let Err(e) = store.acme_failed(&h.hostname, error, true, retry).await {
            tracing::warn!(host = %h.hostname, "cannot record the failed ACME order: {e}");
        }
    }
}

/// About two thirds into the certificate's life left (`now` is its issue), ±5% of it.
fn renew_at(now: i64, not_after_ms: i64, rng: &mut impl Rng) -> i64 {
    let life = (not_after_ms - now).max(0);
    let jitter = life / 20;
    now + life * 2 / 3 + rng.random_range(-jitter..=jitter)
}

/// `retry_min_seconds` doubled per earlier failure in a row, at most `retry_max_seconds`,
/// times 0.8 to 1.2.
fn backoff(s: &AcmeSettings, failures_before: i64, rng: &mut impl Rng) -> Duration {
    let doubled = s
        .retry_min_seconds
        .saturating_mul(1u64 << failures_before.clamp(0, 30));
    let secs = doubled.min(s.retry_max_seconds).max(1) as f64;
    Duration::from_secs_f64(secs * rng.random_range(0.8..=1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_two_thirds_in_with_jitter_and_backs_off() {
        let mut rng = rand::rng();
        let day = 86_400_000;
        for _ in 0..100 {
            let at = renew_at(0, 90 * day, &mut rng);
            assert!((55 * day..=65 * day).contains(&at), "{at}");
        }
        let s = AcmeSettings {
            retry_min_seconds: 60,
            retry_max_seconds: 3600,
            ..AcmeSettings::default()
        };
        let first = backoff(&s, 0, &mut rng).as_secs();
        assert!((48..=72).contains(&first), "{first}");
        let third = backoff(&s, 2, &mut rng).as_secs();
        assert!((192..=288).contains(&third), "{third}");
        let capped = backoff(&s, 40, &mut rng).as_secs();
        assert!((2880..=4320).contains(&capped), "{capped}");
    }
}
