# How a plugin's sources become a component, per language, with the pinned toolchain
# (toolchain.sh). Sourced by scripts/build-plugins for the examples, and carried inside the
# `wharf` binary for `wharf plugin build` (cli/plugin_new.rs), so authors get the same steps.
# C and Rust take their bindings from $WHARF_BINDINGS (plugins/bindings/) when they were
# generated from the plugin's WIT, else run the pinned wit-bindgen.

# plugin_build LANG SRC_DIR WIT_DIR WORLD OUT [INCLUDE_DIR]: absolute paths. C takes every *.c
# of SRC_DIR (and wharf.h from INCLUDE_DIR, default SRC_DIR); JavaScript plugin.js; Python app.py
# (class WitWorld implementing the world's exports); Rust plugin.rs (with the SDK's wharf.rs where
# its #[path] says); AssemblyScript index.ts, a proxy-wasm (ABI 0.2.1) core module, not a
# component (WIT_DIR and WORLD unused).
plugin_build() {
  local lang=$1 dir=$2 wit=$3 w=$4 out=$5 inc=${6:-$2}
  case "$lang" in
    c)
      install_c_compiler
      local tmp base=${w//-/_} define= gen
      case "$w" in
        body-plugin) define=-DWHARF_BODY_PLUGIN ;;
        request-filter) define=-DWHARF_REQUEST_FILTER ;;
        response-body-plugin) define=-DWHARF_RESPONSE_BODY_PLUGIN ;;
      esac
      tmp=$(mktemp -d)
      gen=$(pregenerated_bindings c "$wit")
      if [ -n "$gen" ]; then
        cp "$gen/$base.c" "$gen/$base.h" "$gen/${base}_component_type.o" "$tmp/"
      else
        install_wit_bindgen_c
        wit-bindgen c "$wit" --world "$w" --out-dir "$tmp" >/dev/null 2>&1
      fi
      clang-14 --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Werror $define \
        -I "$tmp" -I "$inc" -o "$tmp/core.wasm" \
        "$dir"/*.c "$tmp/$base.c" "$tmp/${base}_component_type.o"
      jco new "$tmp/core.wasm" -o "$out" # wasm-tools component new, validated
      rm -rf "$tmp"
      ;;
    js)
      install_jco
      jco componentize "$dir/plugin.js" --wit "$wit" -n "$w" \
        --backend qjs --backend-qjs-disable-async --backend-qjs-stub-wasi -o "$out" >&2
      ;;
    python)
      install_componentize_py
      (cd "$dir" && componentize-py -d "$wit" -w "$w" componentize app --stub-wasi -o "$out" >&2)
      rm -rf "$dir/__pycache__"
      ;;
    rust)
      # Debian's rustc 1.63 for wasm32, wit-bindgen 0.36's bindings and jco (toolchain.sh says why those).
      install_rust_compiler
      local tmp base=${w//-/_} gen
      tmp=$(mktemp -d)
      gen=$(pregenerated_bindings rust "$wit")
      if [ -n "$gen" ]; then
        cp "$gen/$base.rs" "$tmp/"
      else
        install_wit_bindgen_rust
        "$WIT_BINDGEN_RUST" rust "$wit" --world "$w" --out-dir "$tmp" \
          --runtime-path crate::wharf::rt >/dev/null 2>"$tmp/log" || { cat "$tmp/log" >&2; return 1; }
      fi
      # The one construct newer than rustc 1.63: the same cast, older syntax.
      sed -i 's/\([A-Za-z0-9_]*\)\.cast_mut()/(\1 as *mut u8)/g' "$tmp/$base.rs"
      WHARF_RUST_BINDINGS="$tmp/$base.rs" "$DEBIAN_RUSTC" --edition 2021 \
        --target wasm32-unknown-unknown --crate-type cdylib -O -C strip=symbols -D warnings \
        -o "$tmp/core.wasm" "$dir/plugin.rs"
      jco new "$tmp/core.wasm" -o "$out" # wasm-tools component new, validated
      rm -rf "$tmp"
      ;;
    assemblyscript)
      install_assemblyscript_proxy_wasm
      # wasi-shim: the SDK logs with process.stdout (WASI fd_write); abort goes to the SDK's
      # logger. asc runs in the toolchain's folder: it ignores the shim's library when given its
      # config by an absolute path (AS111 "Element 'wasi_abort' not found").
      (cd "$AS_PROXY_WASM_DIR" && node_modules/.bin/asc "$dir/index.ts" --path node_modules \
        --config node_modules/@assemblyscript/wasi-shim/asconfig.json --use abort=abort_proc_exit \
        -O3 -o "$out" >&2)
      ;;
    *)
      echo "wharf: unknown language $lang (c, js, python, rust, assemblyscript)" >&2
      return 1
      ;;
  esac
}
