//! Host bindings generated from `plugins/wit/world.wit`: the imports of every plugin world
//! from `gateway` (their union: a component of any world links against it, importing what it
//! uses), and each world's exports from that world, sharing those imports' types.

wasmtime::component::bindgen!({
    path: "wit",
    world: "gateway",
    imports: { default: async },
    exports: { default: async },
    // Host code and tests compare values (replies, rows) directly.
    additional_derives: [PartialEq],
});

pub use wharf::plugin::types;

/// `http-plugin` and `body-plugin` (the latter only adds an import): `on-request` with every
/// header, `on-response`.
pub mod classic {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "http-plugin",
        imports: { default: async },
        exports: { default: async },
        with: { "wharf:plugin": crate::bindings::wharf::plugin },
    });
}

/// `response-body-plugin`: the classic phases plus `on-response-body`.
pub mod response_body {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "response-body-plugin",
        imports: { default: async },
        exports: { default: async },
        with: { "wharf:plugin": crate::bindings::wharf::plugin },
    });
}

/// `request-filter` and `request-body-filter`: `handle-request` with the head only.
pub mod filter {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "request-filter",
        imports: { default: async },
        exports: { default: async },
        with: { "wharf:plugin": crate::bindings::wharf::plugin },
    });
}
