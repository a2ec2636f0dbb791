//! What an instance leaves when its last call ends: the instance itself is dropped where that
//! call ran, and the request keeps only what the gateway still asks of it.
//!
//! Why there: a plugin that waits on I/O runs on the plugin threads, so its memory sits in that
//! core's caches. Dropped on the proxy's thread after the hand-back, its pool slot's reset read
//! that memory from the other core: 5.8 µs of the proxy's time per `redis-rate-limit` request
//! (perf, docs/benchmarks.md, twelfth session). A call that finished on the proxy's thread
//! drops it there, as before.

use wasmtime::Store;

use crate::bindings::types::ResponseAction;
use crate::state::PluginState;

/// An ended instance's leftovers.
#[derive(Default)]
pub(crate) struct Ended {
    /// The request body its call set (`set-request-body`), not yet taken.
    pub request_body: Option<Vec<u8>>,
    /// The response edits a filter declared, not yet taken.
    pub declared: Option<ResponseAction>,
    /// Fuel left when it ended.
    pub fuel_left: u64,
}

impl Ended {
    /// Takes the leftovers; the caller drops the store right after.
    pub(crate) fn take(store: &mut Store<PluginState>) -> Ended {
        let fuel_left = store.get_fuel().unwrap_or(0);
        let caps = &mut store.data_mut().caps;
        Ended {
            request_body: caps.body.replaced.take(),
            declared: caps.response_edits.take(),
            fuel_left,
        }
    }
}
