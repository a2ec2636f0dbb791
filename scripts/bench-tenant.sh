# The benchmark tenant `bench` (host bench.test) and its routes, shared by scripts/bench-peers
# (which measures them) and scripts/pgo-train (which runs them to train the release build).
# Source it, then: bench_tenant WHARF STORE DATA_DIR PLUGINS UPSTREAM REDIS_PORT [HIGRESS_WASM]
# Routes: /  no plugin;  /plugin/  add-header (an http-plugin);  /filter/  header-filter (its work
# as a request-filter);  /chain/, /fchain/  three of each;  /limited/  one Redis INCR per request;
# /as/  as-headers (AssemblyScript proxy-wasm);  /go/  Higress's Go proxy-wasm, when given.
bench_tenant() {
  local bin=$1 store=$2 data=$3 plugins=$4 up=$5 redis_port=$6 higress=${7:-}
  w() { "$bin" "$@" --store "$store" --data-dir "$data" >/dev/null; }
  w tenant add bench --host bench.test
  w route add --tenant bench direct --prefix / --upstream "127.0.0.1:$up"
  w route add --tenant bench plugin --prefix /plugin --upstream "127.0.0.1:$up"
  w plugin add --tenant bench --name tag --file "$plugins/add-header.wasm"
  w route attach --tenant bench plugin --plugin tag
  # add-header's work as a request-filter (header-filter: the response header declared in the
  # request phase, no on-response call, no instance held across the upstream).
  w plugin add --tenant bench --name filter --file "$plugins/header-filter.wasm"
  w route add --tenant bench filter --prefix /filter --upstream "127.0.0.1:$up"
  w route attach --tenant bench filter --plugin filter
  # chain ROUTE WASM FIRST SECOND THIRD: a route of three copies of one plugin (FIRST added
  # already), each setting its own headers.
  chain() {
    w plugin add --tenant bench --name "$4" --file "$2"
    w plugin add --tenant bench --name "$5" --file "$2"
    w route add --tenant bench "$1" --prefix "/$1" --upstream "127.0.0.1:$up"
    w route attach --tenant bench "$1" --plugin "$3"
    w route attach --tenant bench "$1" --plugin "$4" --set request-header=x-tag2 --set response-header=x-tag2
    w route attach --tenant bench "$1" --plugin "$5" --set request-header=x-tag3 --set response-header=x-tag3
  }
  # Three add-headers; the same chain as request-filters (no instance held across the upstream).
  chain chain "$plugins/add-header.wasm" tag tag2 tag3
  chain fchain "$plugins/header-filter.wasm" filter filter2 filter3
  # One Redis INCR per request (a limit no request reaches; the tenant's Redis rate raised to match).
  w plugin add --tenant bench --name limiter --file "$plugins/redis-rate-limit.wasm"
  w route add --tenant bench limited --prefix /limited --upstream "127.0.0.1:$up"
  w route attach --tenant bench limited --plugin limiter --set limit=1000000000
  w tenant set-quota bench --set redis_commands_per_second=1000000 --set redis_max_connections=8
  # proxy-wasm: as-headers (AssemblyScript; one request header, one response header) and
  # Higress's set-header-pre-route (Go, 5.4 MB; two request headers from the route and cluster
  # properties; without enableOnPathPrefix it edits nothing).
  w plugin add --tenant bench --name as-headers --file "$plugins/proxy-wasm/as-headers.wasm"
  w route add --tenant bench as --prefix /as --upstream "127.0.0.1:$up"
  w route attach --tenant bench as --plugin as-headers --plugin-config '{"header":"x-as","value":"1"}'
  if [ -n "$higress" ]; then
    w plugin add --tenant bench --name higress --file "$higress"
    w route add --tenant bench go --prefix /go --upstream "127.0.0.1:$up"
    w route attach --tenant bench go --plugin higress \
      --plugin-config '{"routeNameHeader":"x-route-name","clusterNameHeader":"x-cluster-name","enableOnPathPrefix":["/"]}'
  fi
  # One proxy thread; the load generator is one client address (like a balancer): no
  # per-address connection budget.
  printf 'threads = 1\negress_allow = ["127.0.0.0/8"]\nredis = "redis://127.0.0.1:%s"\n' "$redis_port"
  printf '[clients]\nnew_connections_per_second = 0\nmax_connections_per_address = 0\n'
}
