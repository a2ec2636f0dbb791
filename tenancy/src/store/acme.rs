//! ACME certificates for tenants' hostnames: which names a tenant asked one for, each order's
//! state and lease (a fleet orders a name once), the HTTP-01 answers any node may be asked for,
//! the orders placed (hourly caps) and the fleet's account. The gateway's `acme` module talks to
//! the CA; everything it shares between nodes lives here.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Store};
use crate::error::{StoreError, ValidationError};
use crate::model::{HostPattern, TlsCertificate};
use crate::quotas::ConfigQuotas;

/// Issued certificates are served under this name prefix; uploads' names cannot contain ':'.
pub const ISSUED_PREFIX: &str = "acme:";

const HOUR_MS: i64 = 3_600_000;

/// Where a hostname's certificate stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AcmeState {
    /// Waiting for its first certificate.
    Pending,
    /// Issued and served; renewed ahead of expiry.
    Valid,
    /// The last order failed (`last_error`); retried with backoff.
    Failed,
}

impl AcmeState {
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeState::Pending => "pending",
            AcmeState::Valid => "valid",
            AcmeState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> AcmeState {
        match s {
            "valid" => AcmeState::Valid,
            "failed" => AcmeState::Failed,
            _ => AcmeState::Pending,
        }
    }
}

/// A hostname's ACME certificate as the tenant and the ordering node see it (never the key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AcmeHostname {
    pub hostname: String,
    pub tenant: String,
    pub state: AcmeState,
    /// Why the last order failed ('' after a success).
    pub last_error: String,
    /// Failed orders in a row.
    pub attempts: i64,
    /// When the next order (first, retry or renewal) is due.
    pub next_attempt_ms: i64,
    /// The served certificate's expiry; 0 before the first one.
    pub not_after_ms: i64,
    pub issued_at_ms: i64,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "hostname, tenant_id, state, last_error, attempts, next_attempt_ms, \
                       not_after_ms, issued_at_ms, updated_at_ms";

fn from_row(r: &AnyRow) -> Result<AcmeHostname, StoreError> {
    Ok(AcmeHostname {
        hostname: r.try_get(0)?,
        tenant: r.try_get(1)?,
        state: AcmeState::parse(&r.try_get::<String, _>(2)?),
        last_error: r.try_get(3)?,
        attempts: r.try_get(4)?,
        next_attempt_ms: r.try_get(5)?,
        not_after_ms: r.try_get(6)?,
        issued_at_ms: r.try_get(7)?,
        updated_at_ms: r.try_get(8)?,
    })
}

impl Store {
    /// Asks for an ACME certificate for `hostname`, one of `tenant`'s exact names, within its
    /// hourly order quota (orders placed this hour plus those waiting for a first one) and
    /// the fleet's `fleet_cap`. Asking again for a name already asked is a no-op.
    pub async fn enable_acme(
        &self,
        tenant: &str,
        hostname: &str,
        fleet_cap: u32,
    ) -> Result<(i64, AcmeHostname), StoreError> {
        let name = match HostPattern::parse(hostname)? {
            HostPattern::Exact(n) => n,
            HostPattern::Wildcard(_) => {
                return Err(ValidationError::BadHostname(format!(
                    "{hostname} (a wildcard: HTTP-01 validates one name; add the exact names)"
                ))
                .into())
            }
        };
        let (mut tx, version) = self
            .begin_change("acme.enable", tenant, &format!("{tenant}/{name}"))
            .await?;
        let quotas = Self::quotas_in(&mut tx, tenant).await?;
        let owned = sqlx::query("SELECT 1 FROM hostnames WHERE pattern = $1 AND tenant_id = $2")
            .bind(name.clone())
            .bind(tenant.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if owned.is_none() {
            return Err(ValidationError::BadHostname(format!(
                "{name} (not a hostname of tenant {tenant}: add it first)"
            ))
            .into());
        }
        let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM acme_hostnames WHERE hostname = $1"
        )))
        .bind(name.clone())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            // Asked again: nothing changes, but the version returned is committed (callers
            // wait for it).
            tx.commit().await?;
            return Ok((version, from_row(&row)?));
        }
        let since = now_ms() - HOUR_MS;
        let count = |sql: &'static str| {
            let tenant = tenant.to_string();
            sqlx::query(sql).bind(since).bind(tenant)
        };
        let used: i64 = count(
            "SELECT (SELECT COUNT(*) FROM acme_orders WHERE at_ms > $1 AND tenant_id = $2) + \
             (SELECT COUNT(*) FROM acme_hostnames WHERE tenant_id = $2 AND state = 'pending')",
        )
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let cap = quotas.config.acme_orders_per_hour;
        if used >= i64::from(cap) {
            return Err(StoreError::OrderCap {
                cap: ConfigQuotas::NAMES.acme_orders_per_hour.as_str(),
                limit: cap.into(),
            });
        }
        let fleet: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM acme_orders WHERE at_ms > $1) + \
             (SELECT COUNT(*) FROM acme_hostnames WHERE state = 'pending')",
        )
        .bind(since)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        if fleet >= i64::from(fleet_cap) {
            return Err(StoreError::OrderCap {
                cap: "acme.orders_per_hour (the fleet's)",
                limit: fleet_cap.into(),
            });
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO acme_hostnames (hostname, tenant_id, state, next_attempt_ms, \
             updated_at_ms) VALUES ($1, $2, 'pending', $3, $3)",
        )
        .bind(name.clone())
        .bind(tenant.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM acme_hostnames WHERE hostname = $1"
        )))
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let stored = from_row(&row)?;
        tx.commit().await?;
        Ok((version, stored))
    }

    /// The operator's default (`[acme] all_hostnames`): every exact hostname without an ACME
    /// row gets one, due now; returns how many. Not config (nothing is served yet): no version.
    pub async fn acme_enroll_all(&self) -> Result<u64, StoreError> {
        // `WHERE` before `ON CONFLICT` also keeps SQLite's parser from reading the conflict
        // clause as a join's.
        let done = sqlx::query(
            "INSERT INTO acme_hostnames (hostname, tenant_id, state, next_attempt_ms, \
             updated_at_ms) SELECT pattern, tenant_id, 'pending', $1, $1 FROM hostnames \
             WHERE pattern NOT LIKE '*%' AND pattern NOT IN (SELECT hostname FROM acme_hostnames) \
             ON CONFLICT (hostname) DO NOTHING",
        )
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Stops ordering for `hostname` and removes its issued certificate.
    pub async fn disable_acme(&self, tenant: &str, hostname: &str) -> Result<i64, StoreError> {
        let (mut tx, version) = self
            .begin_change("acme.disable", tenant, &format!("{tenant}/{hostname}"))
            .await?;
        Self::ensure_tenant(&mut tx, tenant).await?;
        let done = sqlx::query("DELETE FROM acme_hostnames WHERE hostname = $1 AND tenant_id = $2")
            .bind(hostname.to_string())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::UnknownCertificate {
                tenant: tenant.into(),
                name: format!("{ISSUED_PREFIX}{hostname}"),
            });
        }
        tx.commit().await?;
        Ok(version)
    }

    /// `tenant`'s ACME hostnames, by name.
    pub async fn acme_hostnames(&self, tenant: &str) -> Result<Vec<AcmeHostname>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM acme_hostnames WHERE tenant_id = $1 ORDER BY hostname"
        )))
        .bind(tenant.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Up to `limit` hostnames whose order is due and whose lease is free.
    pub async fn acme_due(&self, limit: i64) -> Result<Vec<AcmeHostname>, StoreError> {
        let now = now_ms();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM acme_hostnames WHERE next_attempt_ms <= $1 \
             AND lease_until_ms < $1 ORDER BY next_attempt_ms LIMIT $2"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Takes the order for `hostname` for `node` until `until_ms`, if no other node holds it
    /// and it is still due: one conditional update, so two nodes never both win.
    pub async fn take_acme_lease(
        &self,
        hostname: &str,
        node: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE acme_hostnames SET lease_owner = $1, lease_until_ms = $2 \
             WHERE hostname = $3 AND lease_until_ms < $4 AND next_attempt_ms <= $4",
        )
        .bind(node.to_string())
        .bind(until_ms)
        .bind(hostname.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The certificate `cert` (its key sealed) was issued for `hostname`: it is served from the
    /// version returned, and renewed from `renew_at_ms`. `None`: the name's row went (hostname
    /// removed, tenant deleted, ACME turned off) while the order ran: nothing is stored.
    pub async fn acme_issued(
        &self,
        tenant: &str,
        hostname: &str,
        cert: &TlsCertificate,
        renew_at_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let (mut tx, version) = self
            .begin_change("acme.issued", tenant, &format!("{tenant}/{hostname}"))
            .await?;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE acme_hostnames SET state = 'valid', last_error = '', attempts = 0, \
             next_attempt_ms = $1, lease_owner = '', lease_until_ms = 0, chain_pem = $2, \
             key_sealed = $3, not_after_ms = $4, fingerprint = $5, issued_at_ms = $6, \
             updated_at_ms = $6 WHERE hostname = $7 AND tenant_id = $8",
        )
        .bind(renew_at_ms)
        .bind(cert.chain_pem.clone())
        .bind(cert.key_sealed.clone())
        .bind(cert.not_after_ms)
        .bind(cert.fingerprint.clone())
        .bind(now)
        .bind(hostname.to_string())
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(version))
    }

    /// The order for `hostname` failed (or was postponed): `error` is shown to the tenant, the
    /// next try is at `retry_at_ms`, the lease is let go. A valid certificate stays served.
    pub async fn acme_failed(
        &self,
        hostname: &str,
        error: &str,
        counts_as_attempt: bool,
        retry_at_ms: i64,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(2000).collect();
        sqlx::query(
            "UPDATE acme_hostnames SET state = CASE WHEN state = 'valid' THEN 'valid' \
             WHEN $1 = 1 THEN 'failed' ELSE state END, last_error = $2, \
             attempts = attempts + $1, next_attempt_ms = $3, lease_owner = '', \
             lease_until_ms = 0, updated_at_ms = $4 WHERE hostname = $5",
        )
        .bind(i64::from(counts_as_attempt))
        .bind(error)
        .bind(retry_at_ms)
        .bind(now_ms())
        .bind(hostname.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The tenant's issued certificates, as served (after its uploads, which win: `resolver.rs`).
pub(super) fn issued_from_row(r: &AnyRow) -> Result<(String, TlsCertificate), StoreError> {
    let hostname: String = r.try_get(1)?;
    Ok((
        r.try_get(0)?,
        TlsCertificate {
            name: format!("{ISSUED_PREFIX}{hostname}"),
            chain_pem: r.try_get(2)?,
            key_sealed: r.try_get(3)?,
            hostnames: vec![hostname],
            not_after_ms: r.try_get(4)?,
            fingerprint: r.try_get(5)?,
            updated_at_ms: r.try_get(6)?,
        },
    ))
}
