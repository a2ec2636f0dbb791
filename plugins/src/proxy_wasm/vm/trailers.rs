//! Response trailers (`proxy_on_response_trailers`): the trailer map (map type
//! `RESPONSE_TRAILERS`) readable and editable through the header-map functions, with the same
//! bounds as headers (`context.rs`: 1,024 pairs, 1 MiB of additions).

use super::{trap, MapType, Pairs};
use super::{ProxyHost, Vm, VmError};

impl<T: ProxyHost> Vm<T> {
    /// `proxy_on_response_trailers` on the request's context with `trailers`: the trailers as
    /// the module left them. Calls it dispatches and a local reply are dropped (the response
    /// is over but for its trailers: nothing can wait, nothing can answer instead).
    pub async fn response_trailers(&mut self, id: u32, trailers: Pairs) -> Result<Pairs, VmError> {
        let callback = self.started()?.response_trailers.clone();
        let n = trailers.len() as i32;
        {
            let ctx = self.store.data_mut().context();
            ctx.effective = id;
            ctx.set_map(MapType::ResponseTrailers, trailers);
        }
        if let Some(f) = callback {
            // The action is not used: trailers end the stream, nothing is left to hold.
            f.call_async(&mut self.store, (id as i32, n))
                .await
                .map_err(trap)?;
        }
        let ctx = self.store.data_mut().context();
        ctx.calls.clear();
        ctx.local_response = None;
        Ok(ctx.take_map(MapType::ResponseTrailers).unwrap_or_default())
    }
}
