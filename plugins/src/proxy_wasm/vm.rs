//! One proxy-wasm VM: a module instance with its root context started (`_initialize` or
//! `_start`, `proxy_on_context_create`, `proxy_on_vm_start`, `proxy_on_configure`), and the
//! stream callbacks of one request at a time on a context of its own. The gateway's pool (one VM
//! per tenant, plugin version and configuration, docs/proxy-wasm.md) drives it; limits (fuel,
//! deadline, memory) come with the store it is given.

use wasmtime::{Instance, InstancePre, Store, TypedFunc};

use super::abi::{Action, BufferType, MapType, Pairs};
use super::context::{HttpCall, LocalResponse};
use super::env::ProxyHost;

/// The root context's id; request contexts count up from it.
const ROOT: u32 = 1;

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
    pub http_calls: Vec<HttpCall>,
    /// The module let a paused stream go on (`proxy_continue_stream`).
    pub resumed: bool,
}

/// An HTTP call's answer (`None`: it failed: refused, timed out, unreachable).
pub struct CallAnswer {
    pub token: u32,
    pub answer: Option<(Pairs, Vec<u8>)>,
}

/// The started module: its instance and the one export every callback needs.
struct Started {
    instance: Instance,
    context_create: TypedFunc<(i32, i32), ()>,
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
        context_create
            .call_async(&mut *store, (ROOT as i32, 0))
            .await
            .map_err(trap)?;
        self.started = Some(Started {
            instance,
            context_create,
        });
        let sizes = [
            ("proxy_on_vm_start", vm_config.len()),
            ("proxy_on_configure", plugin_config.len()),
        ];
        for (name, size) in sizes {
            if let Ok(f) = self.func2(name) {
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

    fn instance(&self) -> Result<Instance, VmError> {
        self.started
            .as_ref()
            .map(|s| s.instance)
            .ok_or(VmError::NotStarted)
    }

    fn func2(&mut self, name: &'static str) -> Result<TypedFunc<(i32, i32), i32>, VmError> {
        self.instance()?
            .get_typed_func::<(i32, i32), i32>(&mut self.store, name)
            .map_err(|_| VmError::Missing(name))
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
        let create = self
            .started
            .as_ref()
            .map(|s| s.context_create.clone())
            .ok_or(VmError::NotStarted)?;
        create
            .call_async(&mut self.store, (id as i32, ROOT as i32))
            .await
            .map_err(trap)?;
        let outcome = self
            .headers_callback(
                "proxy_on_request_headers",
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
        self.headers_callback(
            "proxy_on_response_headers",
            id,
            MapType::ResponseHeaders,
            headers,
            end_of_stream,
        )
        .await
    }

    async fn headers_callback(
        &mut self,
        name: &'static str,
        id: u32,
        map: MapType,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<HeadersOutcome, VmError> {
        let n = headers.len() as i32;
        self.store.data_mut().context().set_map(map, headers);
        let action = match self
            .instance()?
            .get_typed_func::<(i32, i32, i32), i32>(&mut self.store, name)
        {
            Ok(f) => f
                .call_async(&mut self.store, (id as i32, n, i32::from(end_of_stream)))
                .await
                .map_err(trap)?,
            Err(_) => 0,
        };
        Ok(self.outcome(Action::from_i32(action), map))
    }

    fn outcome(&mut self, action: Action, map: MapType) -> HeadersOutcome {
        let ctx = self.store.data_mut().context();
        HeadersOutcome {
            action,
            headers: ctx.take_map(map).unwrap_or_default(),
            local_response: ctx.local_response.take(),
            http_calls: std::mem::take(&mut ctx.http_calls),
            resumed: std::mem::take(&mut ctx.resumed),
        }
    }

    /// `proxy_on_http_call_response` for a call request `id` made, delivered to the root
    /// context as Envoy does (the SDKs find the caller by token); the request's headers
    /// (`request`) are editable meanwhile, as the module may change them before resuming.
    pub async fn http_call_response(
        &mut self,
        id: u32,
        answer: CallAnswer,
        request: Pairs,
    ) -> Result<HeadersOutcome, VmError> {
        let (headers, body) = answer.answer.unwrap_or_default();
        let (n, size) = (headers.len() as i32, body.len() as i32);
        {
            let ctx = self.store.data_mut().context();
            ctx.effective = id;
            ctx.set_map(MapType::RequestHeaders, request);
            ctx.set_map(MapType::HttpCallResponseHeaders, headers);
            ctx.set_buffer(BufferType::HttpCallResponseBody, body);
        }
        if let Ok(f) = self
            .instance()?
            .get_typed_func::<(i32, i32, i32, i32, i32), ()>(
                &mut self.store,
                "proxy_on_http_call_response",
            )
        {
            f.call_async(
                &mut self.store,
                (ROOT as i32, answer.token as i32, n, size, 0),
            )
            .await
            .map_err(trap)?;
        }
        let ctx = self.store.data_mut().context();
        ctx.take_map(MapType::HttpCallResponseHeaders);
        ctx.set_buffer(BufferType::HttpCallResponseBody, Vec::new());
        Ok(self.outcome(Action::Continue, MapType::RequestHeaders))
    }

    /// The request is over: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub async fn finish(&mut self, id: u32) -> Result<(), VmError> {
        if let Ok(done) = self
            .instance()?
            .get_typed_func::<i32, i32>(&mut self.store, "proxy_on_done")
        {
            done.call_async(&mut self.store, id as i32)
                .await
                .map_err(trap)?;
        }
        for name in ["proxy_on_log", "proxy_on_delete"] {
            if let Ok(f) = self
                .instance()?
                .get_typed_func::<i32, ()>(&mut self.store, name)
            {
                f.call_async(&mut self.store, id as i32)
                    .await
                    .map_err(trap)?;
            }
        }
        let ctx = self.store.data_mut().context();
        ctx.live_contexts.retain(|c| *c != id);
        ctx.effective = ROOT;
        Ok(())
    }
}
