//! What the nodes of a fleet share for ACME beside each name's row (`acme.rs`): the HTTP-01
//! answers any node may be asked for, the orders placed (hourly caps) and the fleet's account.
//! None of it is config: writing here bumps no version.

use sqlx::Row;

use super::{now_ms, Store};
use crate::error::StoreError;

const HOUR_MS: i64 = 3_600_000;

/// An answer published while an order waits for the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeChallenge {
    pub token: String,
    pub hostname: String,
    pub key_authorization: String,
    /// `http-01` or `tls-alpn-01`.
    pub kind: String,
}

impl Store {
    /// Orders placed this hour: by `tenant`, and by the whole fleet.
    pub async fn acme_orders_this_hour(&self, tenant: &str) -> Result<(i64, i64), StoreError> {
        let since = now_ms() - HOUR_MS;
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM acme_orders WHERE at_ms > $1 AND tenant_id = $2), \
             (SELECT COUNT(*) FROM acme_orders WHERE at_ms > $1)",
        )
        .bind(since)
        .bind(tenant.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Records an order placed at the CA (for the caps), pruning those over an hour old.
    pub async fn record_acme_order(&self, tenant: &str, hostname: &str) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query("INSERT INTO acme_orders (tenant_id, hostname, at_ms) VALUES ($1, $2, $3)")
            .bind(tenant.to_string())
            .bind(hostname.to_string())
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM acme_orders WHERE at_ms < $1")
            .bind(now - HOUR_MS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Publishes an answer to a challenge of `kind` (`http-01`, `tls-alpn-01`) until
    /// `expires_at_ms`.
    pub async fn put_acme_challenge(
        &self,
        token: &str,
        hostname: &str,
        key_authorization: &str,
        kind: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO acme_challenges (token, hostname, key_authorization, kind, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token) DO UPDATE SET \
             hostname = excluded.hostname, key_authorization = excluded.key_authorization, \
             kind = excluded.kind, expires_at_ms = excluded.expires_at_ms",
        )
        .bind(token.to_string())
        .bind(hostname.to_string())
        .bind(key_authorization.to_string())
        .bind(kind.to_string())
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_acme_challenge(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM acme_challenges WHERE token = $1 OR expires_at_ms < $2")
            .bind(token.to_string())
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The answers in force.
    pub async fn acme_challenges(&self) -> Result<Vec<AcmeChallenge>, StoreError> {
        let rows = sqlx::query(
            "SELECT token, hostname, key_authorization, kind FROM acme_challenges \
             WHERE expires_at_ms > $1 ORDER BY token LIMIT 10000",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AcmeChallenge {
                    token: r.try_get(0)?,
                    hostname: r.try_get(1)?,
                    key_authorization: r.try_get(2)?,
                    kind: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The fleet's account for `directory_url`, sealed; `None` before the first order.
    pub async fn acme_account(&self, directory_url: &str) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT credentials_sealed FROM acme_accounts WHERE directory_url = $1")
                .bind(directory_url.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Stores the account unless another node stored one first; returns the one that stays,
    /// so every node of the fleet uses the same account.
    pub async fn put_acme_account(
        &self,
        directory_url: &str,
        sealed: &str,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO acme_accounts (directory_url, credentials_sealed, created_at_ms) \
             VALUES ($1, $2, $3) ON CONFLICT (directory_url) DO NOTHING",
        )
        .bind(directory_url.to_string())
        .bind(sealed.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.acme_account(directory_url)
            .await?
            .ok_or_else(|| StoreError::Corrupt("acme account vanished".into()))
    }
}
