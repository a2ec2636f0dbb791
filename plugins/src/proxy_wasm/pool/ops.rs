//! The operations a request's stream runs in a VM (`proxy_wasm::vm`), as one callback each on
//! the plugin threads (`call::Exec`): start, request headers, response headers, teardown. The
//! request's properties are swapped in for its callback and taken back after it.

use wasmtime::InstancePre;

use super::{LiveVm, VmConfigs};
use crate::call::Exec;
use crate::proxy_wasm::abi::{MapType, Pairs};
use crate::proxy_wasm::context::Call;
use crate::proxy_wasm::env::ProxyHost;
use crate::proxy_wasm::vm::{BodyOutcome, CallAnswer, HeadersOutcome, Vm, VmError};
use crate::state::PluginState;

/// Properties by dotted name (`request.path`), for the request's callbacks.
pub type Properties = super::super::context::Properties;

pub(crate) enum VmOp {
    Start {
        pre: InstancePre<PluginState>,
        configs: VmConfigs,
    },
    RequestHeaders {
        headers: Pairs,
        end_of_stream: bool,
        properties: Properties,
    },
    ResponseHeaders {
        id: u32,
        request: Pairs,
        headers: Pairs,
        end_of_stream: bool,
        properties: Properties,
    },
    /// An HTTP call's answer, while the request's headers (`request`) are editable.
    CallAnswer {
        id: u32,
        answer: CallAnswer,
        request: Pairs,
        properties: Properties,
    },
    Finish {
        id: u32,
    },
    Tick,
    /// The answer to a call the root context dispatched (`root_calls.rs`).
    RootCallAnswer {
        answer: CallAnswer,
    },
    /// `proxy_on_response_trailers` with the response's trailers.
    ResponseTrailers {
        id: u32,
        trailers: Pairs,
        properties: Properties,
    },
    /// `proxy_on_queue_ready` for a queue the VM registered.
    QueueReady {
        queue: u32,
    },
    /// What the gateway buffered of the request (or response) body for the module so far; with
    /// `headers`, the response's head held for it.
    Body {
        id: u32,
        response: bool,
        body: Vec<u8>,
        end_of_stream: bool,
        headers: Option<Pairs>,
        max: usize,
        properties: Properties,
    },
    /// The whole request body for a request paused in its headers callback, whose headers
    /// (`request`) are still editable.
    HeldBody {
        id: u32,
        body: Vec<u8>,
        request: Pairs,
        properties: Properties,
    },
}

pub(crate) enum VmDone {
    Started,
    Headers {
        id: u32,
        outcome: HeadersOutcome,
        properties: Properties,
    },
    Finished,
    /// A tick, a queue delivery or a root call's answer, with the calls it dispatched.
    Ticked {
        calls: Vec<Call>,
    },
    Trailers {
        trailers: Pairs,
        properties: Properties,
    },
    Body {
        outcome: BodyOutcome,
        properties: Properties,
    },
    HeldBody {
        outcome: HeadersOutcome,
        replaced: Option<Vec<u8>>,
        properties: Properties,
    },
}

impl Exec for LiveVm {
    type Op = VmOp;
    type Done = VmDone;

    fn store(&mut self) -> &mut wasmtime::Store<PluginState> {
        &mut self.vm.store
    }

    async fn exec(&mut self, op: VmOp) -> wasmtime::Result<VmDone> {
        let vm = &mut self.vm;
        Ok(match op {
            VmOp::Start { pre, configs } => {
                vm.start(&pre, configs.vm(), configs.plugin())
                    .await
                    .map_err(wasm_error)?;
                VmDone::Started
            }
            VmOp::RequestHeaders {
                headers,
                end_of_stream,
                properties,
            } => {
                set_properties(vm, properties);
                let (id, outcome) = vm
                    .request_headers(headers, end_of_stream)
                    .await
                    .map_err(wasm_error)?;
                VmDone::Headers {
                    id,
                    outcome,
                    properties: take_properties(vm),
                }
            }
            VmOp::ResponseHeaders {
                id,
                request,
                headers,
                end_of_stream,
                properties,
            } => {
                set_properties(vm, properties);
                let ctx = vm.store.data_mut().context();
                ctx.effective = id;
                ctx.set_map(MapType::RequestHeaders, request);
                let outcome = vm
                    .response_headers(id, headers, end_of_stream)
                    .await
                    .map_err(wasm_error)?;
                vm.store
                    .data_mut()
                    .context()
                    .take_map(MapType::RequestHeaders);
                VmDone::Headers {
                    id,
                    outcome,
                    properties: take_properties(vm),
                }
            }
            VmOp::CallAnswer {
                id,
                answer,
                request,
                properties,
            } => {
                set_properties(vm, properties);
                let outcome = vm
                    .call_answer(id, answer, request)
                    .await
                    .map_err(wasm_error)?;
                VmDone::Headers {
                    id,
                    outcome,
                    properties: take_properties(vm),
                }
            }
            VmOp::Body {
                id,
                response,
                body,
                end_of_stream,
                headers,
                max,
                properties,
            } => {
                set_properties(vm, properties);
                let outcome = vm
                    .body_piece(id, response, body, end_of_stream, headers, max)
                    .await
                    .map_err(wasm_error)?;
                VmDone::Body {
                    outcome,
                    properties: take_properties(vm),
                }
            }
            VmOp::HeldBody {
                id,
                body,
                request,
                properties,
            } => {
                set_properties(vm, properties);
                let (outcome, replaced) =
                    vm.held_body(id, body, request).await.map_err(wasm_error)?;
                VmDone::HeldBody {
                    outcome,
                    replaced,
                    properties: take_properties(vm),
                }
            }
            VmOp::Tick => VmDone::Ticked {
                calls: vm.tick().await.map_err(wasm_error)?,
            },
            VmOp::QueueReady { queue } => VmDone::Ticked {
                calls: vm.queue_ready(queue).await.map_err(wasm_error)?,
            },
            VmOp::RootCallAnswer { answer } => VmDone::Ticked {
                calls: vm.root_call_answer(answer).await.map_err(wasm_error)?,
            },
            VmOp::ResponseTrailers {
                id,
                trailers,
                properties,
            } => {
                set_properties(vm, properties);
                let trailers = vm
                    .response_trailers(id, trailers)
                    .await
                    .map_err(wasm_error)?;
                VmDone::Trailers {
                    trailers,
                    properties: take_properties(vm),
                }
            }
            VmOp::Finish { id } => {
                vm.store.data_mut().context().effective = id;
                vm.finish(id).await.map_err(wasm_error)?;
                VmDone::Finished
            }
        })
    }
}

fn set_properties(vm: &mut Vm<PluginState>, properties: Properties) {
    vm.store.data_mut().context().properties = properties;
}

fn take_properties(vm: &mut Vm<PluginState>) -> Properties {
    std::mem::take(&mut vm.store.data_mut().context().properties)
}

/// A trap keeps its wasmtime error (classified as fuel, deadline, memory or trap); an ABI
/// misuse becomes one.
fn wasm_error(e: VmError) -> wasmtime::Error {
    match e {
        VmError::Trap(e) => e,
        other => wasmtime::Error::msg(other.to_string()),
    }
}
