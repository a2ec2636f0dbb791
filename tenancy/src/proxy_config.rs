//! A proxy-wasm plugin's configuration on its attachment: the bytes `proxy_on_configure` (the
//! plugin configuration) or `proxy_on_vm_start` (the VM configuration) reads. Given as JSON, as
//! Istio's `pluginConfig` and Higress's rules are; a JSON string is handed over as its text
//! (for plugins configured in another format). Bounded in size: it lives in every node's memory.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// The largest configuration accepted, in bytes as the plugin receives it.
pub const MAX_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProxyConfig(pub serde_json::Value);

impl Hash for ProxyConfig {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes().hash(state);
    }
}

impl ProxyConfig {
    /// What the plugin reads: a string's text, anything else as compact JSON.
    pub fn bytes(&self) -> Vec<u8> {
        match &self.0 {
            serde_json::Value::String(s) => s.as_bytes().to_vec(),
            other => other.to_string().into_bytes(),
        }
    }

    pub fn validate(&self, field: &'static str) -> Result<(), ValidationError> {
        let size = self.bytes().len();
        if size > MAX_BYTES {
            return Err(ValidationError::ProxyConfigTooLarge {
                field,
                size,
                limit: MAX_BYTES,
            });
        }
        Ok(())
    }
}

/// The bytes of an optional configuration (none: empty, as Envoy gives an absent one).
pub fn bytes(config: &Option<ProxyConfig>) -> Vec<u8> {
    config.as_ref().map(ProxyConfig::bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_compact_a_string_is_its_text_and_size_is_capped() {
        let json = ProxyConfig(serde_json::json!({"a": [1, 2]}));
        assert_eq!(json.bytes(), br#"{"a":[1,2]}"#);
        let text = ProxyConfig(serde_json::json!("key: value"));
        assert_eq!(text.bytes(), b"key: value");
        let big = ProxyConfig(serde_json::Value::String("x".repeat(MAX_BYTES + 1)));
        let e = big.validate("plugin_config").unwrap_err().to_string();
        assert!(e.contains("plugin_config"), "{e}");
    }
}
