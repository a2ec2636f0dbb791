//! What the proxy-wasm host functions read and change for the callback in progress: the
//! request's and response's header maps, the buffers (configurations, bodies, an http_call's
//! answer), a local response the module asked for, and which context is effective. One value
//! per VM; the VM's driver (the gateway) fills it before a callback and reads it after.

use std::collections::HashMap;

use super::abi::{BufferType, MapType, Pairs};

/// Pairs one map may hold after a module's edits: the same bound as a decoded map.
const MAX_PAIRS: usize = super::abi::MAX_PAIRS as usize;

/// The shortest tick period a module gets: a 1 ms tick would be a thousand callbacks a second
/// of the tenant's CPU for nothing a request asked.
pub const TICK_FLOOR: std::time::Duration = std::time::Duration::from_millis(100);

/// Calls (`proxy_http_call`) one request may have waiting at once.
pub const MAX_PENDING_CALLS: usize = 16;

/// Calls the root context (a tick, a queue delivery, the VM's start, an answer's callback) may
/// have in flight at once, per VM: dispatched and not answered yet. A tick dispatching calls in
/// a loop gets `BAD_ARGUMENT` past it, as a request past [`MAX_PENDING_CALLS`] does.
pub const MAX_ROOT_CALLS: usize = 16;

/// An HTTP call a module dispatched (`proxy_http_call`), sent by the stream's driver once the
/// callback returns; its answer comes back in `proxy_on_http_call_response` with the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    /// Envoy's cluster name: `outbound|port||host`, a URL, or `host[:port]`.
    pub cluster: String,
    /// Headers with `:method`, `:path`, `:authority`.
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

/// A Redis command a module sent (`proxy_redis_call`, Higress's extension): RESP bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisCall {
    pub token: u32,
    pub query: Vec<u8>,
}

/// A call waiting for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Http(HttpCall),
    Redis(RedisCall),
}

impl Call {
    pub fn token(&self) -> u32 {
        match self {
            Call::Http(c) => c.token,
            Call::Redis(c) => c.token,
        }
    }
}

/// Root-context calls refused past [`MAX_ROOT_CALLS`], by the ABI function that dispatched
/// them: each is counted under its own name.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefusedCalls {
    pub http: u32,
    pub redis: u32,
}

impl RefusedCalls {
    pub fn add(&mut self, call: &Call) {
        let n = match call {
            Call::Http(_) => &mut self.http,
            Call::Redis(_) => &mut self.redis,
        };
        *n = n.saturating_add(1);
    }

    /// `(function, count)` for each function with a refusal.
    pub fn by_function(&self) -> impl Iterator<Item = (&'static str, u32)> {
        [
            ("proxy_http_call", self.http),
            ("proxy_redis_call", self.redis),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
    }
}

/// A reply the module asked for with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Pairs,
    pub body: Vec<u8>,
}

/// Properties by dotted name (`request.path`): the gateway's names are static (no allocation per
/// request for them), a module's own are owned.
pub type Properties = HashMap<std::borrow::Cow<'static, str>, Vec<u8>>;

#[derive(Default)]
pub struct HostContext {
    /// The context the module's calls apply to (`proxy_set_effective_context` may switch it to
    /// another live context of the same VM, never to another VM's).
    pub effective: u32,
    pub live_contexts: Vec<u32>,
    maps: HashMap<u8, Pairs>,
    buffers: HashMap<u8, Vec<u8>>,
    pub local_response: Option<LocalResponse>,
    /// Properties by dotted name (`request.path`).
    pub properties: Properties,
    /// Calls dispatched during the callback in progress, for the driver to send.
    pub calls: Vec<Call>,
    next_token: u32,
    /// `proxy_continue_stream` (or `proxy_resume_http_request`) was called.
    pub resumed: bool,
    /// The module changed a buffer (`proxy_set_buffer_bytes`) in the callback in progress.
    pub body_replaced: bool,
    /// What a body callback may grow its buffer to: the tenant's `plugin_body_max_bytes` (a
    /// module setting a huge buffer is refused there, not after the bytes were held).
    pub body_max: Option<usize>,
    /// How often the module wants `proxy_on_tick` (`proxy_set_tick_period_milliseconds`, at
    /// least [`TICK_FLOOR`]); `None`: never.
    pub tick_period: Option<std::time::Duration>,
    /// The tenant's shared data and metrics on this node (`None`: not served, as in tools).
    pub shared: Option<std::sync::Arc<super::shared::TenantShared>>,
    /// What wakes this VM's queue deliveries (`proxy_on_queue_ready`) when a queue it registered
    /// gets an item; `None`: queues not served.
    pub queue_owner: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// The module registered a queue in the callback in progress: the driver starts delivering.
    pub queue_registered: bool,
    /// The module's memory and allocator (set when its VM starts).
    pub handles: super::memory::Handles,
    /// The root context's calls in flight (sent, their answer not delivered yet): the driver
    /// holds one count per call (`pool/root_calls.rs`).
    pub root_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Calls the root context dispatched past [`MAX_ROOT_CALLS`] since the driver last looked
    /// (refused with `BAD_ARGUMENT`; the driver counts them).
    pub refused_root_calls: RefusedCalls,
}

fn map_key(m: MapType) -> u8 {
    m as u8
}

fn buffer_key(b: BufferType) -> u8 {
    b as u8
}

impl HostContext {
    pub fn set_map(&mut self, m: MapType, pairs: Pairs) {
        self.maps.insert(map_key(m), pairs);
    }

    pub fn map(&self, m: MapType) -> Option<&Pairs> {
        self.maps.get(&map_key(m))
    }

    pub fn take_map(&mut self, m: MapType) -> Option<Pairs> {
        self.maps.remove(&map_key(m))
    }

    pub fn set_buffer(&mut self, b: BufferType, bytes: Vec<u8>) {
        self.buffers.insert(buffer_key(b), bytes);
    }

    pub fn take_buffer(&mut self, b: BufferType) -> Option<Vec<u8>> {
        self.buffers.remove(&buffer_key(b))
    }

    /// `proxy_set_buffer_bytes`: replaces `[start, start + length)` of the buffer with `data`
    /// (clamped to the buffer: the SDKs replace with `0, MAX`, append with `MAX, 0`, prepend
    /// with `0, 0`); false when the buffer is not available now or would pass `max` bytes.
    pub fn splice(
        &mut self,
        b: BufferType,
        start: usize,
        length: usize,
        data: &[u8],
        max: usize,
    ) -> bool {
        let Some(buf) = self.buffers.get_mut(&buffer_key(b)) else {
            return false;
        };
        let start = start.min(buf.len());
        let end = start.saturating_add(length).min(buf.len());
        if buf.len() - (end - start) + data.len() > max {
            return false;
        }
        buf.splice(start..end, data.iter().copied());
        self.body_replaced = true;
        true
    }

    pub fn buffer(&self, b: BufferType) -> Option<&Vec<u8>> {
        self.buffers.get(&buffer_key(b))
    }

    /// The first value of `key` (names compare case-insensitively).
    pub fn map_value(&self, m: MapType, key: &[u8]) -> Option<&[u8]> {
        self.map(m)?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }

    /// Adds a value; false when the map is not available now or is full: [`MAX_PAIRS`] pairs,
    /// or [`MAX_MAP_BYTES`] of names and values (a module handing the same MiB of its memory
    /// again and again would otherwise make the host hold a copy each time, 1,024 times).
    pub fn add(&mut self, m: MapType, key: &[u8], value: &[u8]) -> bool {
        match self.maps.get_mut(&map_key(m)) {
            Some(pairs)
                if pairs.len() < MAX_PAIRS
                    && map_bytes(pairs) + key.len() + value.len() <= MAX_MAP_BYTES =>
            {
                pairs.push((key.to_ascii_lowercase(), value.to_vec()));
                true
            }
            _ => false,
        }
    }

    /// Replaces every value of `key` with `value` (adds it when absent).
    pub fn replace(&mut self, m: MapType, key: &[u8], value: &[u8]) -> bool {
        if !self.remove(m, key) {
            return false;
        }
        self.add(m, key, value)
    }

    /// Removes every value of `key`; false when the map is not available now.
    pub fn remove(&mut self, m: MapType, key: &[u8]) -> bool {
        match self.maps.get_mut(&map_key(m)) {
            Some(pairs) => {
                pairs.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
                true
            }
            None => false,
        }
    }

    /// Queues a call (`make` gets its token); the token, or `None` when the request has too
    /// many waiting.
    pub fn dispatch(&mut self, make: impl FnOnce(u32) -> Call) -> Option<u32> {
        if self.calls.len() >= MAX_PENDING_CALLS {
            return None;
        }
        let in_flight = self
            .root_in_flight
            .load(std::sync::atomic::Ordering::Relaxed);
        if self.effective == super::vm::ROOT && in_flight + self.calls.len() >= MAX_ROOT_CALLS {
            // Built only to know its kind: refused calls are counted by function.
            self.refused_root_calls.add(&make(0));
            return None;
        }
        self.next_token = self.next_token.wrapping_add(1).max(1);
        self.calls.push(make(self.next_token));
        Some(self.next_token)
    }

    /// Switches the effective context: only to a live context of this VM.
    pub fn set_effective(&mut self, id: u32) -> bool {
        if self.live_contexts.contains(&id) {
            self.effective = id;
            true
        } else {
            false
        }
    }
}

/// Bytes (names and values) a map may reach by a module's additions: far above what edits may
/// carry (`output.rs`: 16 KiB), far below 1,024 values of a module's whole memory.
const MAX_MAP_BYTES: usize = 1 << 20;

fn map_bytes(pairs: &Pairs) -> usize {
    pairs.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_edit_case_insensitively_within_bounds() {
        let mut c = HostContext::default();
        assert!(
            !c.add(MapType::RequestHeaders, b"x", b"1"),
            "no map outside its callback"
        );
        c.set_map(
            MapType::RequestHeaders,
            vec![(b"X-A".to_vec(), b"1".to_vec())],
        );
        assert_eq!(
            c.map_value(MapType::RequestHeaders, b"x-a"),
            Some(&b"1"[..])
        );
        assert!(c.replace(MapType::RequestHeaders, b"x-a", b"2"));
        assert!(c.add(MapType::RequestHeaders, b"X-A", b"3"));
        let values: Vec<&[u8]> = c
            .map(MapType::RequestHeaders)
            .unwrap()
            .iter()
            .map(|(_, v)| &v[..])
            .collect();
        assert_eq!(values, [&b"2"[..], &b"3"[..]]);
        assert!(c.remove(MapType::RequestHeaders, b"X-a"));
        assert!(c.map(MapType::RequestHeaders).unwrap().is_empty());
        for i in 0..MAX_PAIRS {
            assert!(c.add(MapType::RequestHeaders, format!("h{i}").as_bytes(), b"v"));
        }
        assert!(
            !c.add(MapType::RequestHeaders, b"one-more", b"v"),
            "a full map refuses"
        );
        c.set_map(MapType::RequestHeaders, Vec::new());
        let half = vec![b'x'; MAX_MAP_BYTES / 2];
        assert!(c.add(MapType::RequestHeaders, b"a", &half));
        assert!(
            !c.add(MapType::RequestHeaders, b"b", &half),
            "a map past its bytes refuses"
        );
        assert!(c.add(MapType::RequestHeaders, b"b", b"small"));
        c.live_contexts = vec![1, 2];
        assert!(c.set_effective(2));
        assert!(!c.set_effective(99), "no context of another request or VM");
    }

    #[test]
    fn root_calls_past_the_bound_are_refused_and_counted_by_function() {
        let mut c = HostContext {
            effective: super::super::vm::ROOT,
            ..HostContext::default()
        };
        c.root_in_flight
            .store(MAX_ROOT_CALLS - 1, std::sync::atomic::Ordering::Relaxed);
        let redis = |token| {
            Call::Redis(RedisCall {
                token,
                query: b"*1\r\n$4\r\nPING\r\n".to_vec(),
            })
        };
        assert!(c.dispatch(redis).is_some(), "the last place is taken");
        assert!(c.dispatch(redis).is_none());
        assert!(c.dispatch(redis).is_none());
        let http = |token| {
            Call::Http(HttpCall {
                token,
                cluster: "c".into(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: 1,
            })
        };
        assert!(c.dispatch(http).is_none());
        assert_eq!(c.refused_root_calls, RefusedCalls { http: 1, redis: 2 });
        let counted: Vec<_> = c.refused_root_calls.by_function().collect();
        assert_eq!(counted, [("proxy_http_call", 1), ("proxy_redis_call", 2)]);
    }
}
