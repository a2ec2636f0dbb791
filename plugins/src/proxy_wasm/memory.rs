//! Guest memory as the proxy-wasm host functions see it: every pointer and length a module
//! passes is checked against its memory before a byte is read or written (a bad one is
//! `INVALID_MEMORY_ACCESS` for that call, never a host fault), and data handed back goes into
//! memory the module allocates itself (`proxy_on_memory_allocate`, or `malloc` for the
//! AssemblyScript SDK), whose answer is checked the same way.

use wasmtime::{AsContextMut, Caller, Extern, Instance, Memory, Store, TypedFunc};

use super::abi::Status;

/// Largest single buffer handed to or taken from a module: bodies are capped lower by quota.
pub const MAX_BYTES: usize = 64 << 20;

/// The module's memory and allocator, looked up once when its VM starts: host calls would
/// otherwise find them by name on every call (several per callback).
#[derive(Default, Clone)]
pub struct Handles {
    memory: Option<Memory>,
    allocate: Option<TypedFunc<i32, i32>>,
}

impl Handles {
    pub fn of<T>(instance: Instance, store: &mut Store<T>) -> Handles {
        Handles {
            memory: instance.get_memory(&mut *store, "memory"),
            allocate: ["proxy_on_memory_allocate", "malloc"]
                .iter()
                .find_map(|name| instance.get_func(&mut *store, name))
                .and_then(|f| f.typed::<i32, i32>(&*store).ok()),
        }
    }
}

/// A store's data that keeps the module's [`Handles`] (`None`: look them up by name).
pub trait GuestHandles {
    fn handles(&mut self) -> Option<&Handles>;
}

impl GuestHandles for () {
    fn handles(&mut self) -> Option<&Handles> {
        None
    }
}

impl<T: super::env::ProxyHost> GuestHandles for T {
    fn handles(&mut self) -> Option<&Handles> {
        Some(&self.context().handles)
    }
}

fn memory<T: GuestHandles>(caller: &mut Caller<'_, T>) -> Result<Memory, Status> {
    if let Some(m) = caller.data_mut().handles().and_then(|h| h.memory) {
        return Ok(m);
    }
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(Status::InvalidMemoryAccess),
    }
}

/// The module's allocator: `proxy_on_memory_allocate`, or `malloc` (the AssemblyScript SDK's).
fn allocator<T: GuestHandles>(caller: &mut Caller<'_, T>) -> Option<TypedFunc<i32, i32>> {
    if let Some(f) = caller.data_mut().handles().and_then(|h| h.allocate.clone()) {
        return Some(f);
    }
    ["proxy_on_memory_allocate", "malloc"]
        .iter()
        .find_map(|name| caller.get_export(name).and_then(Extern::into_func))
        .and_then(|f| f.typed::<i32, i32>(&*caller).ok())
}

/// The `len` bytes at `ptr`.
pub fn read<T: GuestHandles>(
    caller: &mut Caller<'_, T>,
    ptr: i32,
    len: i32,
) -> Result<Vec<u8>, Status> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    if len > MAX_BYTES {
        return Err(Status::BadArgument);
    }
    let mem = memory(caller)?;
    let end = ptr.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    mem.data(&caller)
        .get(ptr..end)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

/// Writes `bytes` at `ptr`.
pub fn write<T: GuestHandles>(
    caller: &mut Caller<'_, T>,
    ptr: i32,
    bytes: &[u8],
) -> Result<(), Status> {
    let ptr = ptr as u32 as usize;
    let mem = memory(caller)?;
    let end = ptr
        .checked_add(bytes.len())
        .ok_or(Status::InvalidMemoryAccess)?;
    mem.data_mut(caller.as_context_mut())
        .get_mut(ptr..end)
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian u32 (a returned pointer or size) at `ptr`.
pub fn write_u32<T: GuestHandles>(
    caller: &mut Caller<'_, T>,
    ptr: i32,
    v: u32,
) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Copies `bytes` into memory the module allocates, and writes where and how long at
/// `ret_ptr` / `ret_size`: how every host function returns data. An empty value is returned as
/// (0, 0) without asking the module for memory (the AssemblyScript SDK reads a value's length
/// from its allocation). `Err`: the module's allocator failed (a trap, its deadline or fuel ran
/// out in it), which fails the callback as a failure anywhere else in the module does.
pub async fn give<T: GuestHandles + Send>(
    caller: &mut Caller<'_, T>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<Result<(), Status>> {
    if bytes.len() > MAX_BYTES {
        return Ok(Err(Status::BadArgument));
    }
    let ptr = if bytes.is_empty() {
        0
    } else {
        let ptr = match allocate(caller, bytes.len() as i32).await? {
            Ok(ptr) => ptr,
            Err(s) => return Ok(Err(s)),
        };
        if let Err(s) = write(caller, ptr, bytes) {
            return Ok(Err(s));
        }
        ptr
    };
    Ok(write_u32(caller, ret_ptr, ptr as u32)
        .and_then(|()| write_u32(caller, ret_size, bytes.len() as u32)))
}

/// `len` bytes of the module's own memory, from its allocator. An allocator that traps fails the
/// call and the callback (`Err`: the trap goes on up, never swallowed into a status the module
/// could carry on after, with its deadline or fuel spent or its runtime broken mid-allocation);
/// one that answers a pointer outside its memory is refused.
async fn allocate<T: GuestHandles + Send>(
    caller: &mut Caller<'_, T>,
    len: i32,
) -> wasmtime::Result<Result<i32, Status>> {
    let Some(typed) = allocator(caller) else {
        return Ok(Err(Status::InternalFailure));
    };
    let ptr = typed.call_async(&mut *caller, len).await?;
    let mem = match memory(caller) {
        Ok(m) => m,
        Err(s) => return Ok(Err(s)),
    };
    let fits = (ptr as u32 as usize)
        .checked_add(len as u32 as usize)
        .is_some_and(|end| ptr != 0 && end <= mem.data_size(&caller));
    Ok(if fits {
        Ok(ptr)
    } else {
        Err(Status::InvalidMemoryAccess)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Config, Engine, Linker, Module, Store};

    /// A module whose `run(ptr, len)` calls the host's `echo` (which reads its bytes and gives
    /// them back through the allocator) and returns the status; `malloc` is a bump allocator,
    /// or, with `garbage`, answers a pointer far outside memory.
    fn module(engine: &Engine, garbage: bool) -> Module {
        let malloc = if garbage {
            "(func (export \"proxy_on_memory_allocate\") (param i32) (result i32) i32.const 0x7ffffff0)"
        } else {
            "(global $next (mut i32) (i32.const 4096))
             (func (export \"proxy_on_memory_allocate\") (param $n i32) (result i32)
               (local $p i32) global.get $next local.set $p
               global.get $next local.get $n i32.add global.set $next local.get $p)"
        };
        let wat = format!(
            r#"(module
                (import "env" "echo" (func $echo (param i32 i32 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (data (i32.const 100) "hello")
                {malloc}
                (func (export "run") (param i32 i32) (result i32)
                  local.get 0 local.get 1 i32.const 200 i32.const 204 call $echo))"#
        );
        Module::new(engine, wat::parse_str(wat).unwrap()).unwrap()
    }

    async fn run(garbage: bool, ptr: i32, len: i32) -> (i32, Vec<u8>) {
        let engine = Engine::new(&Config::new()).unwrap();
        let mut linker = Linker::<()>::new(&engine);
        linker
            .func_wrap_async(
                "env",
                "echo",
                |mut caller: Caller<'_, ()>, (ptr, len, rp, rs): (i32, i32, i32, i32)| {
                    Box::new(async move {
                        let status = match read(&mut caller, ptr, len) {
                            Ok(bytes) => match give(&mut caller, &bytes, rp, rs).await? {
                                Ok(()) => Status::Ok,
                                Err(s) => s,
                            },
                            Err(s) => s,
                        };
                        Ok(status as i32)
                    })
                },
            )
            .unwrap();
        let mut store = Store::new(&engine, ());
        let instance = linker
            .instantiate_async(&mut store, &module(&engine, garbage))
            .await
            .unwrap();
        let f = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "run")
            .unwrap();
        let status = f.call_async(&mut store, (ptr, len)).await.unwrap();
        let mem = instance.get_memory(&mut store, "memory").unwrap();
        let data = mem.data(&store);
        let at = u32::from_le_bytes(data[200..204].try_into().unwrap()) as usize;
        let n = u32::from_le_bytes(data[204..208].try_into().unwrap()) as usize;
        (status, data[at..at + n].to_vec())
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_bad_pointers_are_refused() {
        assert_eq!(
            run(false, 100, 5).await,
            (Status::Ok as i32, b"hello".to_vec())
        );
        // A length past the end of memory, a pointer that wraps: refused, nothing read.
        assert_eq!(
            run(false, 65_530, 100).await.0,
            Status::InvalidMemoryAccess as i32
        );
        assert_eq!(
            run(false, -1, 16).await.0,
            Status::InvalidMemoryAccess as i32
        );
        assert_eq!(run(false, 0, -1).await.0, Status::BadArgument as i32);
        // An allocator answering garbage: refused, nothing written there.
        assert_eq!(
            run(true, 100, 5).await.0,
            Status::InvalidMemoryAccess as i32
        );
        // An empty value needs no allocation.
        assert_eq!(run(true, 100, 0).await, (Status::Ok as i32, Vec::new()));
    }
}
