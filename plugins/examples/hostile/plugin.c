// hostile: a deliberately misbehaving plugin, for the noisy-neighbour load scenario and tests.
// NOT an example to copy. Its `on-request` does what config `mode` says:
//   spin      loop on a cheap host call (config get) until the gateway stops it: costs little
//             fuel, so it runs into the deadline
//   fuel      pure computation until the fuel budget is gone
//   memory    allocate until refused, then trap like an out-of-memory abort
//   trap      execute `unreachable` at once
//   log-spam  write 100,000 log lines (the gateway keeps 32), then continue
// Any other value: continue unchanged.
#include "wharf.h"

static volatile uint64_t sink;

void exports_http_plugin_on_request(http_plugin_request_t *req, http_plugin_request_action_t *ret) {
  (void)req;
  wharf_str mode = wharf_config("mode", "");
  if (wharf_str_eq(mode, "spin")) {
    wharf_str k, v;
    http_plugin_string_set(&k, "no-such-key");
    for (;;) {
      if (wharf_plugin_config_get(&k, &v)) sink += v.len;
    }
  } else if (wharf_str_eq(mode, "fuel")) {
    for (uint64_t i = 0;; i++) sink += i * 2654435761u;
  } else if (wharf_str_eq(mode, "memory")) {
    for (;;) {
      uint8_t *p = (uint8_t *)malloc(1 << 20);
      if (!p) __builtin_trap();
      p[0] = 1;
      sink += p[0];
    }
  } else if (wharf_str_eq(mode, "trap")) {
    __builtin_trap();
  } else if (wharf_str_eq(mode, "log-spam")) {
    for (int i = 0; i < 100000; i++) wharf_log(WHARF_PLUGIN_LOG_LEVEL_INFO, "spam spam spam spam spam spam spam spam");
  }
  wharf_continue(ret, wharf_ops(0), 0);
}

void exports_http_plugin_on_response(http_plugin_response_t *resp, http_plugin_response_action_t *ret) {
  (void)resp;
  wharf_response_unchanged(ret);
}
