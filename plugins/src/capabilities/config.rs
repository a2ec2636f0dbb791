//! `wharf:plugin/config`: the key/values given where the plugin is attached to a route.
//! Read-only and already bounded by the store's validation, so no quota beyond that.

use crate::bindings::wharf::plugin::config::Host;
use crate::state::PluginState;

impl Host for PluginState {
    async fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    async fn entries(&mut self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
