//! Nodes report the config version they serve, so an operator sees the fleet converge (or a
//! node stuck behind). Rows of nodes silent for a day are dropped.

use sqlx::Row;

use super::{now_ms, NodeReport, Store};
use crate::error::StoreError;

const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

impl Store {
    /// Records that node `id` serves `config_version` now.
    pub async fn report_node(
        &self,
        id: &str,
        config_version: i64,
        started_at_ms: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO nodes (id, config_version, started_at_ms, seen_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
             config_version = excluded.config_version, started_at_ms = excluded.started_at_ms, \
             seen_at_ms = excluded.seen_at_ms",
        )
        .bind(id.to_string())
        .bind(config_version)
        .bind(started_at_ms)
        .bind(now)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM nodes WHERE seen_at_ms < $1")
            .bind(now - FORGET_AFTER_MS)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every node heard from in the last day, most recently seen first.
    pub async fn nodes(&self) -> Result<Vec<NodeReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, config_version, started_at_ms, seen_at_ms FROM nodes ORDER BY seen_at_ms DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeReport {
                    id: r.try_get(0)?,
                    config_version: r.try_get(1)?,
                    started_at_ms: r.try_get(2)?,
                    seen_at_ms: r.try_get(3)?,
                })
            })
            .collect()
    }
}
