//! Adding a plugin version, written once for the admin API's upload and the CLI's direct-store
//! mode: the bytes are checked against the size limit, compiled (so a plugin that would not run
//! is refused before it is stored, and the compiled code is cached), then stored.

use wharf_plugins::{PluginRuntime, RejectError};
use wharf_tenancy::{Store, StoreError};

/// The version stored.
pub struct Added {
    pub version: i64,
    pub sha256: String,
    pub config_version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AddPluginError {
    #[error("the plugin is empty: send its .wasm component")]
    Empty,
    #[error("{size} bytes, the limit is {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error(transparent)]
    Rejected(#[from] RejectError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validates `bytes` (at most `limit`) and stores them as the next version of `tenant`'s plugin
/// `name` (`source`: where it was pulled from, if it was). Compiles on the runtime's compile
/// thread, in the tenant's turn.
pub async fn add_plugin(
    store: &Store,
    runtime: &PluginRuntime,
    tenant: &str,
    name: &str,
    bytes: &[u8],
    limit: u64,
    source: Option<&str>,
) -> Result<Added, AddPluginError> {
    if bytes.is_empty() {
        return Err(AddPluginError::Empty);
    }
    let size = bytes.len() as u64;
    if size > limit {
        return Err(AddPluginError::TooLarge { size, limit });
    }
    // The one copy of the upload: the compile thread owns it while the original is stored.
    let compiled = runtime.compile(Some(tenant), bytes.to_vec()).await?;
    let (version, config_version) = store
        .add_plugin_version_from(tenant, name, bytes, source)
        .await?;
    Ok(Added {
        version,
        sha256: compiled.sha256.clone(),
        config_version,
    })
}
