//! One proxy-wasm VM: a module instance with its root context started (`_initialize` or
//! `_start`, `proxy_on_context_create`, `proxy_on_vm_start`, `proxy_on_configure`), and the
//! stream callbacks of one request at a time on a context of its own. The gateway's pool (one VM
//! per tenant, plugin version and configuration, docs/proxy-wasm.md) drives it; limits (fuel,
//! deadline, memory) come with the store it is given.

use wasmtime::{InstancePre, Store, TypedFunc};

use super::abi::{Action, BufferType, MapType, Pairs};
use super::context::{Call, LocalResponse};
use super::env::ProxyHost;

mod answers;
mod body;
mod callbacks;
mod trailers;
pub use body::BodyOutcome;
use callbacks::Started;

/// The root context's id; request contexts count up from it.
pub(super) const ROOT: u32 = 1;

/// Why a VM cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("the module does not export {0}")]
    Missing(&'static str),
    #[error("{0} refused the configuration")]
    Refused(&'static str),
    #[error("the module failed: {}", describe(.0))]
    Trap(wasmtime::Error),
    #[error("the VM is not started")]
    NotStarted,
}

fn describe(e: &wasmtime::Error) -> String {
    format!("{e:#}").chars().take(300).collect()
}

fn trap(e: wasmtime::Error) -> VmError {
    VmError::Trap(e)
}

/// What a request's header callback left.
#[derive(Debug)]
pub struct HeadersOutcome {
    pub action: Action,
    /// The header map as the module left it.
    pub headers: Pairs,
    pub local_response: Option<LocalResponse>,
    /// Calls the module dispatched in the callback, for the driver to send.
    pub calls: Vec<Call>,
    /// The module let a paused stream go on (`proxy_continue_stream`).
    pub resumed: bool,
}

/// A call's answer.
pub struct CallAnswer {
    pub token: u32,
    pub answer: Answer,
}

pub enum Answer {
    /// Headers (`:status` first) and body; `None`: the call failed (refused, timed out,
    /// unreachable).
    Http(Option<(Pairs, Vec<u8>)>),
    /// The RESP reply (a command Redis or the allow-list refused is an error reply); `None`:
    /// Redis was not reachable.
    Redis(Option<Vec<u8>>),
}

pub struct Vm<T: ProxyHost> {
    pub store: Store<T>,
    started: Option<Started>,
    next_context: u32,
}

impl<T: ProxyHost> Vm<T> {
    /// A VM on `store`, not started yet ([`Vm::start`]).
    pub fn new(store: Store<T>) -> Vm<T> {
        Vm {
            store,
            started: None,
            next_context: ROOT + 1,
        }
    }

    /// Instantiates and starts the root context with the VM and plugin configurations.
    pub async fn start(
        &mut self,
        pre: &InstancePre<T>,
        vm_config: &[u8],
        plugin_config: &[u8],
    ) -> Result<(), VmError> {
        let store = &mut self.store;
        let instance = pre.instantiate_async(&mut *store).await.map_err(trap)?;
        // Go and Rust are reactors (`_initialize`); AssemblyScript's `_start` only initializes.
        for init in ["_initialize", "_start"] {
            if let Ok(f) = instance.get_typed_func::<(), ()>(&mut *store, init) {
                f.call_async(&mut *store, ()).await.map_err(trap)?;
                break;
            }
        }
        let context_create = instance
            .get_typed_func::<(i32, i32), ()>(&mut *store, "proxy_on_context_create")
            .map_err(|_| VmError::Missing("proxy_on_context_create"))?;
        let ctx = store.data_mut().context();
        ctx.live_contexts = vec![ROOT];
        ctx.effective = ROOT;
        ctx.set_buffer(BufferType::VmConfiguration, vm_config.to_vec());
        ctx.set_buffer(BufferType::PluginConfiguration, plugin_config.to_vec());
        store.data_mut().context().handles = super::memory::Handles::of(instance, &mut *store);
        context_create
            .call_async(&mut *store, (ROOT as i32, 0))
            .await
            .map_err(trap)?;
        self.started = Some(Started::new(instance, store, context_create));
        let sizes = [
            ("proxy_on_vm_start", vm_config.len()),
            ("proxy_on_configure", plugin_config.len()),
        ];
        for (name, size) in sizes {
            if let Ok(f) = instance.get_typed_func::<(i32, i32), i32>(&mut self.store, name) {
                let ok = f
                    .call_async(&mut self.store, (ROOT as i32, size as i32))
                    .await
                    .map_err(trap)?;
                if ok == 0 {
                    return Err(VmError::Refused(name));
                }
            }
        }
        Ok(())
    }

    fn started(&self) -> Result<&Started, VmError> {
        self.started.as_ref().ok_or(VmError::NotStarted)
    }

    /// A new request's context, then `proxy_on_request_headers` with `headers`.
    pub async fn request_headers(
        &mut self,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<(u32, HeadersOutcome), VmError> {
        let id = self.next_context;
        self.next_context += 1;
        {
            let ctx = self.store.data_mut().context();
            ctx.live_contexts.push(id);
            ctx.effective = id;
            ctx.local_response = None;
        }
        let create = self.started()?.context_create.clone();
        create
            .call_async(&mut self.store, (id as i32, ROOT as i32))
            .await
            .map_err(trap)?;
        let callback = self.started()?.request_headers.clone();
        let outcome = self
            .headers_callback(
                callback,
                id,
                MapType::RequestHeaders,
                headers,
                end_of_stream,
            )
            .await?;
        Ok((id, outcome))
    }

    /// `proxy_on_response_headers` on the request's context.
    pub async fn response_headers(
        &mut self,
        id: u32,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<HeadersOutcome, VmError> {
        let callback = self.started()?.response_headers.clone();
        self.headers_callback(
            callback,
            id,
            MapType::ResponseHeaders,
            headers,
            end_of_stream,
        )
        .await
    }

    async fn headers_callback(
        &mut self,
        callback: Option<TypedFunc<(i32, i32, i32), i32>>,
        id: u32,
        map: MapType,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<HeadersOutcome, VmError> {
        let n = headers.len() as i32;
        self.store.data_mut().context().set_map(map, headers);
        let action = match callback {
            Some(f) => f
                .call_async(&mut self.store, (id as i32, n, i32::from(end_of_stream)))
                .await
                .map_err(trap)?,
            None => 0,
        };
        Ok(self.outcome(Action::from_i32(action), map))
    }

    fn outcome(&mut self, action: Action, map: MapType) -> HeadersOutcome {
        let ctx = self.store.data_mut().context();
        HeadersOutcome {
            action,
            headers: ctx.take_map(map).unwrap_or_default(),
            local_response: ctx.local_response.take(),
            calls: std::mem::take(&mut ctx.calls),
            resumed: std::mem::take(&mut ctx.resumed),
        }
    }

    /// `proxy_on_tick` on the root context; the calls it dispatched, for the driver to send
    /// as the root context's (their answers come back to it).
    pub async fn tick(&mut self) -> Result<Vec<Call>, VmError> {
        if let Some(f) = self.started()?.tick.clone() {
            let ctx = self.store.data_mut().context();
            ctx.effective = ROOT;
            f.call_async(&mut self.store, ROOT as i32)
                .await
                .map_err(trap)?;
        }
        Ok(self.root_calls())
    }

    /// `proxy_on_queue_ready` on the root context: queue `queue` got items; the calls it
    /// dispatched, as for a tick.
    pub async fn queue_ready(&mut self, queue: u32) -> Result<Vec<Call>, VmError> {
        if let Some(f) = self.started()?.queue_ready.clone() {
            self.store.data_mut().context().effective = ROOT;
            f.call_async(&mut self.store, (ROOT as i32, queue as i32))
                .await
                .map_err(trap)?;
        }
        Ok(self.root_calls())
    }

    /// The calls the root context dispatched in the callback that just ran (a tick, a queue
    /// delivery, a call's answer, the VM's start).
    pub fn root_calls(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.store.data_mut().context().calls)
    }

    /// The request is over: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub async fn finish(&mut self, id: u32) -> Result<(), VmError> {
        let started = self.started()?;
        let (done, log, delete) = (
            started.done.clone(),
            started.log.clone(),
            started.delete.clone(),
        );
        if let Some(done) = done {
            done.call_async(&mut self.store, id as i32)
                .await
                .map_err(trap)?;
        }
        for f in [log, delete].into_iter().flatten() {
            f.call_async(&mut self.store, id as i32)
                .await
                .map_err(trap)?;
        }
        let ctx = self.store.data_mut().context();
        ctx.live_contexts.retain(|c| *c != id);
        ctx.effective = ROOT;
        Ok(())
    }
}
