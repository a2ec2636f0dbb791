//! Host bindings generated from `plugins/wit/world.wit`.

// The host provides the widest world, `body-plugin` (`http-plugin` plus `body`); a component
// of either world links against it, importing what it uses.
wasmtime::component::bindgen!({
    path: "wit",
    world: "body-plugin",
    imports: { default: async },
    exports: { default: async },
    // Host code and tests compare values (replies, rows) directly.
    additional_derives: [PartialEq],
});

pub use wharf::plugin::types;

/// The exports every plugin has (`on-request`, `on-response`), whichever world it was built for.
pub use BodyPlugin as HttpPlugin;
pub use BodyPluginPre as HttpPluginPre;
