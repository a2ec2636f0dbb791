//! What travels to the plugin threads for a call: an instance's store and its exports, and the
//! one operation a call runs in it (instantiating on the first, on a fiber or without one:
//! `fiberless.rs`).

use std::sync::Arc;

use wasmtime::Store;

use crate::bindings::classic::HttpPlugin;
use crate::bindings::filter::RequestFilter;
use crate::bindings::response_body::ResponseBodyPlugin;
use crate::bindings::types::{Request, RequestAction, RequestHead, Response, ResponseAction};
use crate::cache::{CompiledPlugin, Exports};
use crate::fiberless::{self, Attempt, Plain};
use crate::state::PluginState;

/// What travels to the plugin threads.
pub(crate) struct Live {
    pub(crate) store: Store<PluginState>,
    pub(crate) compiled: Arc<CompiledPlugin>,
    /// Set by the first call (instantiation runs the component's start function).
    pub(crate) bindings: Option<Bindings>,
}

/// The instance's exports, by its world.
pub(crate) enum Bindings {
    Classic(HttpPlugin),
    ResponseBody(ResponseBodyPlugin),
    Filter(RequestFilter),
}

pub(crate) enum Op {
    Start,
    Request(Request),
    /// A filter's request: its head, and the headers its `request` imports read from.
    Filter(Arc<RequestHead>, http::HeaderMap),
    Response(Response),
    ResponseBody(Vec<u8>),
}

pub(crate) enum Done {
    Started,
    Request(RequestAction),
    Response(ResponseAction),
    ResponseBody(Option<Vec<u8>>),
}

impl Live {
    /// After an attempt without a fiber ran past its slice: a fresh store for the same call,
    /// and what the tick would have done to a call on a fiber: the next tenant in line runs
    /// first, and the rest of the call goes to the plugin threads (`call::start_on`).
    async fn restart(&mut self) -> wasmtime::Result<()> {
        fiberless::restart(&mut self.store).map_err(|e| wasmtime::Error::msg(e.to_string()))?;
        self.store.data().cpu.clone().yield_slice().await;
        Ok(())
    }
}

impl crate::call::Exec for Live {
    type Op = Op;
    type Done = Done;

    fn store(&mut self) -> &mut Store<PluginState> {
        &mut self.store
    }

    async fn exec(&mut self, op: Op) -> wasmtime::Result<Done> {
        let op = match op {
            // A filter's call: its headers go into the store for `request` to read; without a
            // fiber when it can (`fiberless.rs`).
            Op::Filter(head, headers) => {
                self.store.data_mut().caps.request = headers;
                if let (None, Some(Plain::Filter(pre))) =
                    (&self.bindings, self.compiled.fiberless())
                {
                    match fiberless::filter(&mut self.store, pre, &head) {
                        Attempt::Done(action) => return action.map(Done::Request),
                        Attempt::SliceOver => self.restart().await?,
                    }
                }
                // The headers are in the store now.
                Op::Filter(head, http::HeaderMap::new())
            }
            // An `http-plugin`'s first call, without a fiber when it can; its `on-response`
            // runs on one, through the exports this binds.
            Op::Request(req) => {
                if let (None, Some(Plain::Classic(plain))) =
                    (&self.bindings, self.compiled.fiberless())
                {
                    match fiberless::on_request(&mut self.store, plain, &req) {
                        Attempt::Done(done) => {
                            let (action, exports) = done?;
                            self.bindings = Some(Bindings::Classic(exports));
                            return Ok(Done::Request(action));
                        }
                        Attempt::SliceOver => self.restart().await?,
                    }
                }
                Op::Request(req)
            }
            op => op,
        };
        let bindings = match self.bindings.take() {
            Some(b) => b,
            None => match &self.compiled.exports {
                Exports::Classic(pre) => {
                    Bindings::Classic(pre.instantiate_async(&mut self.store).await?)
                }
                Exports::ResponseBody(pre) => {
                    Bindings::ResponseBody(pre.instantiate_async(&mut self.store).await?)
                }
                Exports::RequestFilter(pre) => {
                    Bindings::Filter(pre.instantiate_async(&mut self.store).await?)
                }
                Exports::ProxyWasm(_) => {
                    wasmtime::bail!("a proxy-wasm module runs in a VM, not as an instance")
                }
            },
        };
        let bindings = self.bindings.insert(bindings);
        Ok(match (op, bindings) {
            (Op::Start, _) => Done::Started,
            (Op::Request(req), Bindings::Classic(b)) => {
                Done::Request(b.call_on_request(&mut self.store, &req).await?)
            }
            (Op::Filter(head, _), Bindings::Filter(b)) => {
                Done::Request(b.call_handle_request(&mut self.store, &head).await?)
            }
            (Op::Response(resp), Bindings::Classic(b)) => {
                Done::Response(b.call_on_response(&mut self.store, &resp).await?)
            }
            (Op::Request(req), Bindings::ResponseBody(b)) => {
                Done::Request(b.call_on_request(&mut self.store, &req).await?)
            }
            (Op::Response(resp), Bindings::ResponseBody(b)) => {
                Done::Response(b.call_on_response(&mut self.store, &resp).await?)
            }
            (Op::ResponseBody(body), Bindings::ResponseBody(b)) => {
                Done::ResponseBody(b.call_on_response_body(&mut self.store, &body).await?)
            }
            _ => wasmtime::bail!("the plugin's world has no such phase"),
        })
    }
}
