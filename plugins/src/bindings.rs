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

/// One plugin world's exports, over the shared import bindings above: `{ default: async }` for
/// async calls (on a fiber), `{}` for plain calls (for a component that imports only plain host
/// calls: its first call runs on the caller's stack, `fiberless.rs`).
macro_rules! world_exports {
    ($(#[$doc:meta])* $module:ident, $world:literal, $exports:tt) => {
        $(#[$doc])*
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "wit",
                world: $world,
                imports: { default: async },
                exports: $exports,
                with: { "wharf:plugin": crate::bindings::wharf::plugin },
            });
        }
    };
}

world_exports!(
    /// `http-plugin` and `body-plugin` (the latter only adds an import): `on-request` with every
    /// header, `on-response`.
    classic,
    "http-plugin",
    { default: async }
);
world_exports!(
    /// `response-body-plugin`: the classic phases plus `on-response-body`.
    response_body,
    "response-body-plugin",
    { default: async }
);
world_exports!(
    /// `request-filter` and `request-body-filter`: `handle-request` with the head only.
    filter,
    "request-filter",
    { default: async }
);
world_exports!(
    /// `request-filter`'s `handle-request` as a plain call.
    filter_plain,
    "request-filter",
    {}
);
world_exports!(
    /// `http-plugin`'s `on-request` as a plain call (its `on-response` runs on a fiber, through
    /// `classic`).
    classic_plain,
    "http-plugin",
    {}
);
