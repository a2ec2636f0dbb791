use super::*;
use wasmtime::{Config, Engine, Store};

#[derive(Default)]
struct Host {
    ctx: HostContext,
    logs: Vec<String>,
}

impl ProxyHost for Host {
    fn context(&mut self) -> &mut HostContext {
        &mut self.ctx
    }
    fn log(&mut self, _: tracing::Level, message: &str) {
        self.logs.push(message.to_string());
    }
}

/// `run` exercises the served functions; each status lands at 300 + 4·i.
const WAT: &str = r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $rm (param i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $setpairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_call" (func $grpc (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "x-in")
  (data (i32.const 110) "x-addedyes")
  (data (i32.const 130) "denied")
  (data (i32.const 140) "\a0\86\01\00")
  (data (i32.const 150) "hello from wasm")
  (global $next (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32) global.get $next local.set $p
    global.get $next local.get $n i32.add global.set $next local.get $p)
  (func (export "run")
    (i32.store (i32.const 300) (call $get (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 200) (i32.const 204)))
    (i32.store (i32.const 304) (call $add (i32.const 0) (i32.const 110) (i32.const 7) (i32.const 117) (i32.const 3)))
    (i32.store (i32.const 308) (call $rm (i32.const 0) (i32.const 100) (i32.const 4)))
    (i32.store (i32.const 312) (call $reply (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 130) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)))
    ;; 100,000 pairs claimed in 4 bytes
    (i32.store (i32.const 316) (call $setpairs (i32.const 0) (i32.const 140) (i32.const 4)))
    (i32.store (i32.const 320) (call $eff (i32.const 999)))
    (i32.store (i32.const 324) (call $log (i32.const 2) (i32.const 65530) (i32.const 100)))
    (i32.store (i32.const 328) (call $log (i32.const 2) (i32.const 150) (i32.const 15)))
    (i32.store (i32.const 332) (call $grpc (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))))"#;

#[tokio::test]
async fn header_maps_replies_and_bad_calls_through_the_abi() {
    let engine = Engine::new(&Config::new()).unwrap();
    let module = Module::new(&engine, wat::parse_str(WAT).unwrap()).unwrap();
    let mut linker = Linker::<Host>::new(&engine);
    link(&mut linker).unwrap();
    stub_remaining(&mut linker, &module).unwrap();
    let mut host = Host::default();
    host.ctx.set_map(
        MapType::RequestHeaders,
        vec![(b"x-in".to_vec(), b"secret".to_vec())],
    );
    host.ctx.live_contexts = vec![1, 2];
    let mut store = Store::new(&engine, host);
    let instance = linker.instantiate_async(&mut store, &module).await.unwrap();
    let run = instance
        .get_typed_func::<(), ()>(&mut store, "run")
        .unwrap();
    run.call_async(&mut store, ()).await.unwrap();

    let mem = instance.get_memory(&mut store, "memory").unwrap();
    let data = mem.data(&store);
    let word = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as i32;
    let statuses: Vec<i32> = (0..9).map(|i| word(300 + 4 * i)).collect();
    use Status::*;
    let expected = [
        Ok,
        Ok,
        Ok,
        Ok,
        SerializationFailure,
        BadArgument,
        InvalidMemoryAccess,
        Ok,
        Unimplemented,
    ]
    .map(|s| s as i32);
    assert_eq!(statuses, expected);
    let (at, len) = (word(200) as usize, word(204) as usize);
    assert_eq!(&data[at..at + len], b"secret");

    let host = store.data();
    let headers = host.ctx.map(MapType::RequestHeaders).unwrap();
    assert_eq!(headers, &vec![(b"x-added".to_vec(), b"yes".to_vec())]);
    let reply = host.ctx.local_response.as_ref().unwrap();
    assert_eq!((reply.status, &reply.body[..]), (403, &b"denied"[..]));
    assert_eq!(host.logs, ["hello from wasm"]);
}
