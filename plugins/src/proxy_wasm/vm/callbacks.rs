//! A started module's callbacks.

use wasmtime::{Instance, Store, TypedFunc};

/// `proxy_on_http_call_response(root, token, headers, body size, trailers)`.
type HttpCallResponse = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The started module's callbacks, looked up once when it starts: a lookup by name (and its
/// type check) for every callback of every request was ~4 % of a proxy-wasm request's CPU.
/// `None`: the module does not export it (or not with the ABI's type), and the call is skipped.
pub(super) struct Started {
    pub(super) context_create: TypedFunc<(i32, i32), ()>,
    pub(super) request_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(super) response_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(super) request_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(super) response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(super) response_trailers: Option<TypedFunc<(i32, i32), i32>>,
    pub(super) http_call_response: Option<HttpCallResponse>,
    pub(super) redis_call_response: Option<TypedFunc<(i32, i32, i32, i32), ()>>,
    pub(super) tick: Option<TypedFunc<i32, ()>>,
    pub(super) queue_ready: Option<TypedFunc<(i32, i32), ()>>,
    pub(super) done: Option<TypedFunc<i32, i32>>,
    pub(super) log: Option<TypedFunc<i32, ()>>,
    pub(super) delete: Option<TypedFunc<i32, ()>>,
}

impl Started {
    pub(super) fn new<T>(
        instance: Instance,
        store: &mut Store<T>,
        context_create: TypedFunc<(i32, i32), ()>,
    ) -> Started {
        let mut store = &mut *store;
        Started {
            context_create,
            request_headers: instance
                .get_typed_func(&mut store, "proxy_on_request_headers")
                .ok(),
            response_headers: instance
                .get_typed_func(&mut store, "proxy_on_response_headers")
                .ok(),
            request_body: instance
                .get_typed_func(&mut store, "proxy_on_request_body")
                .ok(),
            response_body: instance
                .get_typed_func(&mut store, "proxy_on_response_body")
                .ok(),
            response_trailers: instance
                .get_typed_func(&mut store, "proxy_on_response_trailers")
                .ok(),
            http_call_response: instance
                .get_typed_func(&mut store, "proxy_on_http_call_response")
                .ok(),
            redis_call_response: instance
                .get_typed_func(&mut store, "proxy_on_redis_call_response")
                .ok(),
            tick: instance.get_typed_func(&mut store, "proxy_on_tick").ok(),
            queue_ready: instance
                .get_typed_func(&mut store, "proxy_on_queue_ready")
                .ok(),
            done: instance.get_typed_func(&mut store, "proxy_on_done").ok(),
            log: instance.get_typed_func(&mut store, "proxy_on_log").ok(),
            delete: instance.get_typed_func(&mut store, "proxy_on_delete").ok(),
        }
    }
}
