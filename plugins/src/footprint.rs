//! What one instance of a component takes from the shared instance pool. The pool is sized per
//! instance slot (8 core instances, 2 memories, 2 tables each, `engine.rs`), but a component may
//! hold up to 64 core instances (Python components hold 38): counted as one instance, a tenant at
//! its instance quota with such components could take half the pool's core instances, and other
//! tenants' instantiations fail while it holds them. So an instance is charged the slots its
//! component needs, against the tenant's `plugin_max_instances` and the node's pool alike.

use wasmparser::{Instance, Parser, Payload};

/// What the pool sets aside per instance slot (`engine::build`).
pub const CORE_INSTANCES_PER_SLOT: u32 = 8;
pub const MEMORIES_PER_SLOT: u32 = 2;
pub const TABLES_PER_SLOT: u32 = 2;

/// A component's core instances, memories and tables, counted from its binary: each core
/// module instantiation, and the memories and tables each core module defines (components made
/// by `wasm-tools component new` instantiate each module once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

impl Footprint {
    /// A proxy-wasm core module: one instance with its memory and table. No component has zero
    /// core instances, so the disk cache also reads this value as "the artifact is a module".
    pub const MODULE: Footprint = Footprint {
        core_instances: 0,
        memories: 1,
        tables: 1,
    };

    /// Counts `bytes` (a component already validated by the compiler).
    pub fn of(bytes: &[u8]) -> Result<Footprint, wasmparser::BinaryReaderError> {
        let mut f = Footprint::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::InstanceSection(reader) => {
                    for instance in reader {
                        if let Instance::Instantiate { .. } = instance? {
                            f.core_instances += 1;
                        }
                    }
                }
                Payload::MemorySection(reader) => f.memories += reader.count(),
                Payload::TableSection(reader) => f.tables += reader.count(),
                _ => {}
            }
        }
        Ok(f)
    }

    /// Instance slots one instance takes: at least one.
    pub fn slots(&self) -> u32 {
        [
            self.core_instances.div_ceil(CORE_INSTANCES_PER_SLOT),
            self.memories.div_ceil(MEMORIES_PER_SLOT),
            self.tables.div_ceil(TABLES_PER_SLOT),
            1,
        ]
        .into_iter()
        .max()
        .unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_scarcest_resource() {
        let f = |core_instances, memories, tables| Footprint {
            core_instances,
            memories,
            tables,
        };
        assert_eq!(f(0, 0, 0).slots(), 1);
        assert_eq!(f(3, 1, 1).slots(), 1, "a C component");
        assert_eq!(f(38, 2, 2).slots(), 5, "a Python component");
        assert_eq!(f(8, 4, 1).slots(), 2);
        assert_eq!(f(1, 1, 5).slots(), 3);
    }
}
