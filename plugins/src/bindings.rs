//! Host bindings generated from `plugins/wit/world.wit`.

wasmtime::component::bindgen!({
    path: "wit",
    world: "http-plugin",
    imports: { default: async },
    exports: { default: async },
});

pub use wharf::plugin::types;
