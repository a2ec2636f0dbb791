//! A part of the API's state built on its first use: the gateway hands the API its runtime and
//! key sealer ready-made, while the CLI's in-process API (`cli/local.rs`) builds them only for
//! the commands that use them (an upload compiles; a certificate is sealed), so listing routes
//! neither starts a wasm engine nor creates a key file.

use std::sync::{Arc, OnceLock};

use super::ApiError;

type Build<T> = dyn Fn() -> anyhow::Result<Arc<T>> + Send + Sync;

pub struct OnDemand<T> {
    cell: Arc<OnceLock<Arc<T>>>,
    build: Option<Arc<Build<T>>>,
}

/// By hand: a derive would ask `T: Clone`, and only the `Arc`s are cloned.
impl<T> Clone for OnDemand<T> {
    fn clone(&self) -> Self {
        OnDemand {
            cell: self.cell.clone(),
            build: self.build.clone(),
        }
    }
}

impl<T> OnDemand<T> {
    pub fn ready(value: Arc<T>) -> OnDemand<T> {
        OnDemand {
            cell: Arc::new(OnceLock::from(value)),
            build: None,
        }
    }

    pub fn lazy(build: impl Fn() -> anyhow::Result<Arc<T>> + Send + Sync + 'static) -> Self {
        OnDemand {
            cell: Arc::new(OnceLock::new()),
            build: Some(Arc::new(build)),
        }
    }

    /// The value, built now if it is the first use. Only the CLI's own process ever builds
    /// one (the gateway's are ready), so a failure's detail goes to the operator at the CLI.
    pub fn get(&self) -> Result<&Arc<T>, ApiError> {
        if let Some(v) = self.cell.get() {
            return Ok(v);
        }
        let built = match &self.build {
            Some(build) => build(),
            None => Err(anyhow::anyhow!("no value and no way to build it")),
        };
        match built {
            Ok(v) => Ok(self.cell.get_or_init(|| v)),
            Err(e) => Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                format!("{e:#}"),
            )),
        }
    }
}
