//! A route's reference to a plugin: its content hash, and the compiled plugin while memory
//! holds it. Routes hold compiled plugins only weakly, so the compiled-code cache may evict an
//! idle one (least recently used, past its budget) and a node with 1,000 plugins attached keeps
//! in memory only those being used; the next request loads it again from the disk cache (or, if
//! that file is gone, compiles the store's bytes again on the compile thread). A node's boot
//! therefore reads no plugin the disk cache holds: each is loaded by its first request.

use parking_lot::Mutex;
use std::sync::{Arc, Weak};

use tokio::runtime::Handle;
use wharf_plugins::{CompiledPlugin, PluginRuntime};
use wharf_tenancy::Store;

/// Why an attached plugin cannot run; requests through it fail with `plugin_unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("version {version} of plugin {plugin} does not exist")]
    NoSuchVersion { plugin: String, version: i64 },
    #[error("plugin was not loaded")]
    NotLoaded,
    #[error("cannot fetch plugin bytes: {0}")]
    Fetch(String),
    #[error("plugin bytes are missing from the store")]
    MissingBytes,
    #[error("plugin bytes in the store are damaged: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Compile(String),
}

/// One plugin of a route's chain, resolved against the compiled-code cache.
pub struct Attached {
    pub name: Arc<str>,
    /// `Err`: the attached version does not exist.
    pub plugin: Result<Arc<PluginRef>, Unavailable>,
    pub config: wharf_plugins::AttachmentConfig,
    /// Where the plugin may send HTTP requests.
    pub outbound: Arc<[wharf_tenancy::outbound::OutboundHost]>,
    /// A proxy-wasm plugin's configurations (empty for components).
    pub proxy: wharf_plugins::proxy_wasm::pool::VmConfigs,
    pub fail_open: bool,
}

/// The store's plugin bytes, for nodes that must compile what their disk cache lacks. Fetches
/// run on the runtime that connected the store (the pool's own).
#[derive(Default)]
pub struct BlobSource {
    store: Mutex<Option<(Store, Handle)>>,
}

impl BlobSource {
    /// Binds the source to a connected store; fetches run on the calling runtime.
    pub fn connect(&self, store: &Store) {
        *self.store.lock() = Some((store.clone(), Handle::current()));
    }

    /// Unbinds it, before the store's runtime ends.
    pub fn disconnect(&self) {
        *self.store.lock() = None;
    }

    async fn fetch(&self, sha: &str) -> Result<Vec<u8>, Unavailable> {
        let Some((store, runtime)) = self.store.lock().clone() else {
            return Err(Unavailable::Fetch(
                "the config store is not connected".into(),
            ));
        };
        let sha = sha.to_string();
        runtime
            .spawn(async move { store.plugin_blob(&sha).await })
            .await
            .map_err(|e| Unavailable::Fetch(e.to_string()))?
            .map_err(|e| match e {
                // Damaged bytes stay damaged: no retry per request.
                wharf_tenancy::StoreError::Corrupt(why) => Unavailable::Corrupt(why),
                other => Unavailable::Fetch(other.to_string()),
            })?
            .ok_or(Unavailable::MissingBytes)
    }
}

pub struct PluginRef {
    pub sha256: String,
    held: Mutex<Weak<CompiledPlugin>>,
    /// One load at a time per plugin (a burst of first requests reads the disk once); holds
    /// the failure that no retry can fix (bytes gone, no longer compile) once seen.
    loading: tokio::sync::Mutex<Option<Unavailable>>,
    blobs: Arc<BlobSource>,
}

impl PluginRef {
    pub fn new(sha256: String, blobs: Arc<BlobSource>) -> Self {
        PluginRef {
            sha256,
            held: Mutex::new(Weak::new()),
            loading: tokio::sync::Mutex::new(None),
            blobs,
        }
    }

    /// The compiled plugin if memory still holds it: a request's fast path. Baseline code
    /// that optimized code has replaced is let go of here, for the optimized plugin.
    pub fn get(&self, runtime: &PluginRuntime) -> Option<Arc<CompiledPlugin>> {
        let mut p = self.held()?;
        if p.superseded() {
            p = runtime.in_memory(&self.sha256)?;
            self.hold(&p);
        }
        runtime.touch(&p);
        Some(p)
    }

    fn held(&self) -> Option<Arc<CompiledPlugin>> {
        self.held.lock().upgrade()
    }

    /// Holds (weakly) what memory already has: a reload does not read the disk.
    pub fn adopt(&self, runtime: &PluginRuntime) {
        if let Some(p) = runtime.in_memory(&self.sha256) {
            self.hold(&p);
        }
    }

    fn hold(&self, plugin: &Arc<CompiledPlugin>) {
        *self.held.lock() = Arc::downgrade(plugin);
    }

    /// The compiled plugin: from memory, else the disk cache, else compiled from the store's
    /// bytes. The caller bounds how long it waits; an abandoned load still finishes into the
    /// cache for the next request.
    pub async fn load(
        &self,
        runtime: &Arc<PluginRuntime>,
    ) -> Result<Arc<CompiledPlugin>, Unavailable> {
        if let Some(p) = self.get(runtime) {
            return Ok(p);
        }
        let mut failed = self.loading.lock().await;
        if let Some(e) = &*failed {
            return Err(e.clone());
        }
        if let Some(p) = self.held() {
            return Ok(p);
        }
        let loaded = match runtime.load(&self.sha256).await {
            Some(p) => Ok(p),
            None => self.compile(runtime).await,
        };
        match &loaded {
            Ok(p) => self.hold(p),
            Err(
                e @ (Unavailable::MissingBytes | Unavailable::Corrupt(_) | Unavailable::Compile(_)),
            ) => {
                *failed = Some(e.clone());
            }
            Err(_) => {}
        }
        loaded
    }

    async fn compile(
        &self,
        runtime: &Arc<PluginRuntime>,
    ) -> Result<Arc<CompiledPlugin>, Unavailable> {
        let bytes = self.blobs.fetch(&self.sha256).await?;
        let compiled = runtime
            .compile(None, bytes)
            .await
            .map_err(|e| Unavailable::Compile(e.to_string()))?;
        if compiled.sha256 != self.sha256 {
            return Err(Unavailable::Fetch(
                "the store's bytes do not match the plugin's digest".into(),
            ));
        }
        Ok(compiled)
    }
}
