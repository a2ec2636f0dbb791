//! The registry: from one list of capabilities (the `registry!` call in `mod.rs`), the structs
//! that hold each one's settings, node value, tenant state and instance state as typed fields,
//! and the calls that go to all of them (link, prepare, purge). Typed fields, not a map of
//! `dyn Any`: a host call reaches its state with a field access, and a capability missing from
//! the list is a compile error where it is used.

use super::{Capability, TenantStates};

/// Capability `C` is in the registry: where its value and states are.
pub trait Registered<C: Capability> {
    fn capability(&self) -> &C;
    #[doc(hidden)]
    fn cell(states: &TenantStates) -> &tokio::sync::OnceCell<C::TenantState>;
}

macro_rules! registry {
    ($($field:ident: $cap:ty),+ $(,)?) => {
        /// Every capability's settings, from the bootstrap file.
        #[derive(Debug, Clone, Default)]
        pub struct CapabilitySettings {
            $(pub $field: <$cap as Capability>::Settings,)+
        }

        /// Every capability's node-level value.
        pub struct NodeCapabilities {
            context: NodeContext,
            $(pub $field: $cap,)+
        }

        /// Every capability's per-instance state, in the instance's store (cloned only for a
        /// call restarted on a fiber: `fiberless.rs`).
        #[derive(Clone)]
        pub struct InstanceStates {
            $(pub $field: <$cap as Capability>::InstanceState,)+
        }

        $(
            impl Registered<$cap> for NodeCapabilities {
                fn capability(&self) -> &$cap {
                    &self.$field
                }
                fn cell(states: &TenantStates) -> &tokio::sync::OnceCell<<$cap as Capability>::TenantState> {
                    &states.$field
                }
            }
        )+

        impl NodeCapabilities {
            fn new(settings: CapabilitySettings, context: NodeContext) -> Result<Self, SettingsError> {
                Ok(NodeCapabilities {
                    $($field: <$cap as Capability>::new(settings.$field, &context)?,)+
                    context,
                })
            }

            /// Links every capability's interface (and the world's shared types).
            pub fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
                crate::bindings::types::add_to_linker::<PluginState, wasmtime::component::HasSelf<PluginState>>(linker, |s| s)?;
                $(<$cap as Capability>::link(linker)?;)+
                Ok(())
            }

            async fn prepare(&self, tenant: &str, quotas: &Quotas) -> Result<(), HostError> {
                $(self.$field.prepare(tenant, quotas).await?;)+
                Ok(())
            }

            async fn purge(&self, tenant: &str) -> Result<(), HostError> {
                $(self.$field.purge(tenant).await?;)+
                Ok(())
            }

            async fn upkeep(&self, tenants: &[String]) -> Result<(), HostError> {
                $(self.$field.upkeep(tenants).await?;)+
                Ok(())
            }
        }

        impl InstanceStates {
            pub fn new(ctx: &InstanceContext<'_>) -> Self {
                InstanceStates {
                    $($field: <$cap as Capability>::instance(ctx),)+
                }
            }
        }

        /// Every capability's state of one tenant, each built on first use.
        #[doc(hidden)]
        #[derive(Default)]
        pub struct TenantStates {
            $($field: tokio::sync::OnceCell<<$cap as Capability>::TenantState>,)+
        }
    };
}

pub(crate) use registry;
