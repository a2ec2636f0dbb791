# Shared by scripts/*: where caches live and how missing Debian packages get installed.

# Build outputs and tools live outside the clone so CI and later runs reuse them.
export WHARF_CACHE_DIR="${WHARF_CACHE_DIR:-$HOME/.cache/wharf}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WHARF_CACHE_DIR/target}"

# need_cmd COMMAND DEBIAN_PACKAGE: install the package when the command is missing.
need_cmd() {
  if ! command -v "$1" >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null; then
    echo "wharf: installing $2 (for $1)" >&2
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
    if [ -z "${WHARF_APT_UPDATED:-}" ]; then
      $SUDO apt-get update -qq >&2
      export WHARF_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >&2
  fi
}

# pg_bin NAME: path of a PostgreSQL server binary (Debian keeps them off PATH).
pg_bin() {
  local found
  found=$(compgen -G "/usr/lib/postgresql/*/bin/$1" | sort -V | tail -n 1)
  echo "${found:-$1}"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Deletes all but the newest three builds of each executable in the debug target dir (one name
# has a build per feature set, e.g. the `wharf` binary for `cargo build` and for `cargo test`).
prune_stale_test_binaries() {
  local deps="$CARGO_TARGET_DIR/debug/deps"
  [ -d "$deps" ] || return 0
  find "$deps" -maxdepth 1 -type f -executable ! -name '*.so' -printf '%T@ %f\n' \
    | sort -rn \
    | awk '{ n = $2; sub(/-[0-9a-f]+$/, "", n); if (seen[n]++ >= 3) print $2 }' \
    | while read -r f; do rm -f "$deps/$f"; done
}

# nginx_conf DIR BODY [MAIN-CONTEXT LINES]: DIR/nginx.conf for a foreground nginx with one worker
# (run it as `nginx -c DIR/nginx.conf -p DIR`), BODY in its `http` block, its files all in DIR.
nginx_conf() {
  mkdir -p "$1"
  cat > "$1/nginx.conf" <<NGINX
${3:-}
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1; proxy_temp_path $1; fastcgi_temp_path $1;
  uwsgi_temp_path $1; scgi_temp_path $1;
  $2
}
NGINX
}
