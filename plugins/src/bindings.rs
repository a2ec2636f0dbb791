//! Host bindings generated from `plugins/wit/world.wit`: the imports of every plugin world
//! from `gateway` (their union: a component of any world links against it, importing what it
//! uses), and each world's exports from that world, sharing those imports' types.

wasmtime::component::bindgen!({
    path: "wit",
    world: "gateway",
    // Host calls that only read or set the instance's own state run as plain calls: an async
    // host call boxes a future and enters the fiber's blocking context, ~0.1 µs each, and a
    // filter makes several (docs/benchmarks.md, thirteenth session).
    imports: {
        "wharf:plugin/log.log": exact,
        "wharf:plugin/config.get": exact,
        "wharf:plugin/config.entries": exact,
        "wharf:plugin/request.get": exact,
        "wharf:plugin/request.entries": exact,
        "wharf:plugin/body.request-body": exact,
        "wharf:plugin/body.set-request-body": exact,
        "wharf:plugin/response-edits.declare": exact,
        default: async,
    },
    exports: { default: async },
    // Host code and tests compare values (replies, rows) directly.
    additional_derives: [PartialEq],
});

pub use wharf::plugin::types;

/// One plugin world's exports, over the shared import bindings above.
macro_rules! world_exports {
    ($(#[$doc:meta])* $module:ident, $world:literal) => {
        $(#[$doc])*
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "wit",
                world: $world,
                imports: { default: async },
                exports: { default: async },
                with: { "wharf:plugin": crate::bindings::wharf::plugin },
            });
        }
    };
}

world_exports!(
    /// `http-plugin` and `body-plugin` (the latter only adds an import): `on-request` with every
    /// header, `on-response`.
    classic,
    "http-plugin"
);
world_exports!(
    /// `response-body-plugin`: the classic phases plus `on-response-body`.
    response_body,
    "response-body-plugin"
);
world_exports!(
    /// `request-filter` and `request-body-filter`: `handle-request` with the head only.
    filter,
    "request-filter"
);

/// `request-filter`'s export as a plain call, for a filter that imports only plain host calls:
/// it runs on the caller's stack, without a fiber (`fiberless.rs`).
pub mod filter_plain {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "request-filter",
        imports: { default: async },
        with: { "wharf:plugin": crate::bindings::wharf::plugin },
    });
}

/// `http-plugin`'s exports as plain calls: its first call (instantiation and `on-request`) runs
/// without a fiber when it imports only plain host calls (`fiberless.rs`).
pub mod classic_plain {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "http-plugin",
        imports: { default: async },
        with: { "wharf:plugin": crate::bindings::wharf::plugin },
    });
}
