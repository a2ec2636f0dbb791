//! Host bindings generated from `plugins/wit/world.wit`.

wasmtime::component::bindgen!({
    path: "wit",
    world: "http-plugin",
    imports: { default: async },
    exports: { default: async },
    // Host code and tests compare values (replies, rows) directly.
    additional_derives: [PartialEq],
});

pub use wharf::plugin::types;
