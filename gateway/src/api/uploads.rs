//! How many plugin uploads may be in flight (body being read, compiling, being stored): a few
//! per tenant and a few per node, so concurrent 30 MB uploads cannot grow the gateway without
//! bound. An upload waits for its turn before its body is read, and gives up after a while.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

pub const PER_TENANT: usize = 2;
pub const PER_NODE: usize = 8;
const WAIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Uploads {
    node: Arc<Semaphore>,
    tenants: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Default for Uploads {
    fn default() -> Self {
        Uploads {
            node: Arc::new(Semaphore::new(PER_NODE)),
            tenants: Arc::default(),
        }
    }
}

/// One upload's place (tenant's, then node's); freed on drop.
pub struct UploadSlot {
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl Uploads {
    pub async fn admit(&self, tenant: &str) -> Result<UploadSlot, ApiError> {
        let mine = {
            let mut map = self.tenants.lock();
            // Idle tenants' semaphores are dropped, so the map stays as small as the uploads.
            map.retain(|_, s| s.available_permits() < PER_TENANT);
            map.entry(tenant.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(PER_TENANT)))
                .clone()
        };
        let busy = || {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "uploads_busy",
                format!(
                    "too many uploads in flight (at most {PER_TENANT} per tenant, {PER_NODE} per node) for {} s; retry later",
                    WAIT.as_secs()
                ),
            )
        };
        let both = async {
            let t = mine.acquire_owned().await.ok()?;
            let n = self.node.clone().acquire_owned().await.ok()?;
            Some((t, n))
        };
        let permits = tokio::time::timeout(WAIT, both)
            .await
            .ok()
            .flatten()
            .ok_or_else(busy)?;
        Ok(UploadSlot { _permits: permits })
    }
}
