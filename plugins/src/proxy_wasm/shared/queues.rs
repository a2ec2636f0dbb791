//! Shared queues (`proxy_register_shared_queue`, `proxy_resolve_shared_queue`,
//! `proxy_enqueue_shared_queue`, `proxy_dequeue_shared_queue`; `proxy_on_queue_ready` is
//! delivered by `pool/queue.rs`). Per tenant like shared data: a queue is named in its tenant's
//! [`TenantShared`], so another tenant's VM can neither resolve it by name nor reach it by id
//! (ids are looked up in the caller's own tenant). A queue and each item it holds take a slot of
//! the tenant's [`MAX_KEYS`] and their bytes count in its [`MAX_BYTES`], with its shared data.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use tokio::sync::Notify;
use wasmtime::{Caller, Linker};

use super::{TenantShared, MAX_BYTES, MAX_KEYS};
use crate::proxy_wasm::abi::Status;
use crate::proxy_wasm::env::{code, ProxyHost};
use crate::proxy_wasm::memory;

/// A queue name's longest.
const MAX_NAME: usize = 256;

pub(super) struct Queue {
    name: Vec<u8>,
    items: VecDeque<Vec<u8>>,
    /// The VM that registered it last (its cell's wake-up), told of each enqueue.
    owner: Weak<Notify>,
    /// Items came since its owner was last called.
    ready: bool,
}

impl TenantShared {
    /// The id (index + 1) of the queue `name`, now owned by `owner`; registered if new.
    pub fn register_queue(&self, name: &[u8], owner: &Arc<Notify>) -> Result<u32, Status> {
        let mut data = self.data.lock();
        if let Some(i) = data.queues.iter().position(|q| q.name == name) {
            data.queues[i].owner = Arc::downgrade(owner);
            return Ok(i as u32 + 1);
        }
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(Status::BadArgument);
        }
        data.take_slot(name.len())?;
        data.queues.push(Queue {
            name: name.to_vec(),
            items: VecDeque::new(),
            owner: Arc::downgrade(owner),
            ready: false,
        });
        Ok(data.queues.len() as u32)
    }

    pub fn resolve_queue(&self, name: &[u8]) -> Option<u32> {
        let data = self.data.lock();
        let i = data.queues.iter().position(|q| q.name == name)?;
        Some(i as u32 + 1)
    }

    /// Adds an item and tells the queue's owner; refused past the tenant's bounds.
    pub fn enqueue(&self, id: u32, item: &[u8]) -> Result<(), Status> {
        let owner = {
            let mut data = self.data.lock();
            let i = (id as usize).wrapping_sub(1);
            if i >= data.queues.len() {
                return Err(Status::NotFound);
            }
            data.take_slot(item.len())?;
            let q = &mut data.queues[i];
            q.items.push_back(item.to_vec());
            q.ready = true;
            q.owner.upgrade()
        };
        if let Some(owner) = owner {
            owner.notify_one();
        }
        Ok(())
    }

    pub fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status> {
        let mut data = self.data.lock();
        let q = data
            .queues
            .get_mut((id as usize).wrapping_sub(1))
            .ok_or(Status::NotFound)?;
        let item = q.items.pop_front().ok_or(Status::Empty)?;
        data.queued -= 1;
        data.bytes -= item.len();
        Ok(item)
    }

    /// The queues `owner` owns that got items since it was last told, marked told.
    pub fn take_ready(&self, owner: &Arc<Notify>) -> Vec<u32> {
        let mut data = self.data.lock();
        let mut ready = Vec::new();
        for (i, q) in data.queues.iter_mut().enumerate() {
            if q.ready && std::ptr::eq(q.owner.as_ptr(), Arc::as_ptr(owner)) {
                q.ready = false;
                ready.push(i as u32 + 1);
            }
        }
        ready
    }
}

impl TenantShared {
    /// Queue `id`'s delivery did not happen (its VM was busy): told again at the next wake-up.
    pub fn not_told(&self, id: u32) {
        if let Some(q) = self
            .data
            .lock()
            .queues
            .get_mut((id as usize).wrapping_sub(1))
        {
            q.ready = true;
        }
    }
}

impl super::Data {
    /// One more slot of `bytes`, within the tenant's bounds shared with its shared data.
    fn take_slot(&mut self, bytes: usize) -> Result<(), Status> {
        if self.entries.len() + self.queued >= MAX_KEYS || self.bytes + bytes > MAX_BYTES {
            return Err(Status::BadArgument);
        }
        self.queued += 1;
        self.bytes += bytes;
        Ok(())
    }
}

/// Links the queue functions.
pub(super) fn link<T: ProxyHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    const M: &str = "env";
    linker.func_wrap(
        M,
        "proxy_register_shared_queue",
        |mut c: Caller<'_, T>, np: i32, ns: i32, id_ptr: i32| {
            let name = match memory::read(&mut c, np, ns) {
                Ok(n) => n,
                Err(s) => return s as i32,
            };
            let ctx = c.data_mut().context();
            let (Some(shared), Some(owner)) = (ctx.shared.clone(), ctx.queue_owner.clone()) else {
                return Status::Unimplemented as i32;
            };
            match shared.register_queue(&name, &owner) {
                Ok(id) => {
                    c.data_mut().context().queue_registered = true;
                    code(memory::write_u32(&mut c, id_ptr, id))
                }
                Err(s) => s as i32,
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_resolve_shared_queue",
        // The VM id is Envoy's scope for names; here the scope is the tenant.
        |mut c: Caller<'_, T>, _vp: i32, _vs: i32, np: i32, ns: i32, id_ptr: i32| {
            let name = match memory::read(&mut c, np, ns) {
                Ok(n) => n,
                Err(s) => return s as i32,
            };
            let Some(shared) = c.data_mut().context().shared.clone() else {
                return Status::Unimplemented as i32;
            };
            match shared.resolve_queue(&name) {
                Some(id) => code(memory::write_u32(&mut c, id_ptr, id)),
                None => Status::NotFound as i32,
            }
        },
    )?;
    linker.func_wrap(
        M,
        "proxy_enqueue_shared_queue",
        |mut c: Caller<'_, T>, id: i32, vp: i32, vs: i32| {
            // Refused before it is copied out of the guest.
            if vs as u32 as usize > MAX_BYTES {
                return Status::BadArgument as i32;
            }
            let item = match memory::read(&mut c, vp, vs) {
                Ok(v) => v,
                Err(s) => return s as i32,
            };
            let Some(shared) = c.data_mut().context().shared.clone() else {
                return Status::Unimplemented as i32;
            };
            code(shared.enqueue(id as u32, &item))
        },
    )?;
    linker.func_wrap_async(
        M,
        "proxy_dequeue_shared_queue",
        |mut c: Caller<'_, T>, (id, rp, rs): (i32, i32, i32)| {
            Box::new(async move {
                let Some(shared) = c.data_mut().context().shared.clone() else {
                    return Ok(Status::Unimplemented as i32);
                };
                match shared.dequeue(id as u32) {
                    Ok(item) => Ok(code(memory::give(&mut c, &item, rp, rs).await?)),
                    Err(s) => Ok(s as i32),
                }
            })
        },
    )?;
    Ok(())
}

/// The served names (for `env::stub_remaining`).
pub(crate) const SERVED: &[&str] = &[
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue",
];

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_metrics::Metrics;

    #[test]
    fn queues_are_bounded_with_shared_data_and_wake_their_owner() {
        let s = TenantShared::new("t".into(), Arc::new(Metrics::new()));
        let owner = Arc::new(Notify::new());
        let id = s.register_queue(b"jobs", &owner).unwrap();
        assert_eq!(
            s.register_queue(b"jobs", &owner),
            Ok(id),
            "same name, same id"
        );
        assert_eq!(s.resolve_queue(b"jobs"), Some(id));
        assert_eq!(s.resolve_queue(b"other"), None);
        assert_eq!(s.dequeue(id), Err(Status::Empty));
        assert_eq!(s.enqueue(id + 1, b"x"), Err(Status::NotFound));
        s.enqueue(id, b"one").unwrap();
        assert_eq!(s.take_ready(&owner), [id]);
        assert!(s.take_ready(&owner).is_empty(), "told once");
        assert_eq!(s.take_ready(&Arc::new(Notify::new())), Vec::<u32>::new());
        assert_eq!(s.dequeue(id).unwrap(), b"one");
        // Items and shared data share the tenant's slots.
        s.set(b"k", b"v", 0).unwrap();
        let mut n = 0;
        while s.enqueue(id, b"x").is_ok() {
            n += 1;
        }
        assert_eq!(n, MAX_KEYS - 2, "the queue's slot and the key's");
        assert_eq!(s.set(b"k2", b"v", 0), Err(Status::BadArgument));
        s.dequeue(id).unwrap();
        s.set(b"k2", b"v", 0).unwrap();
        // And bytes.
        while s.dequeue(id).is_ok() {}
        assert_eq!(s.enqueue(id, &vec![0; MAX_BYTES]), Err(Status::BadArgument));
    }
}
