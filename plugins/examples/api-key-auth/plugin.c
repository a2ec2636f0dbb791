// api-key-auth: answers 401 unless the request carries one of the configured keys.
//
// Config:
//   keys    comma-separated accepted keys (required; with none set, every request is refused)
//   header  the header carrying the key, default x-api-key
// The key header is removed before the request goes upstream: the upstream never sees secrets.
//
// Built for the `request-filter` world (WHARF_REQUEST_FILTER): it has no response phase, so its
// instance ends before the upstream is called, and only the one header it asks for is copied in.
#include "wharf.h"

static bool key_listed(wharf_str keys, const uint8_t *key, size_t key_len) {
  size_t start = 0;
  for (size_t i = 0; i <= keys.len; i++) {
    if (i == keys.len || keys.ptr[i] == ',') {
      size_t len = i - start;
      if (len > 0 && len == key_len && memcmp(keys.ptr + start, key, len) == 0) return true;
      start = i + 1;
    }
  }
  return false;
}

void exports_request_filter_handle_request(request_filter_request_head_t *req,
                                           request_filter_request_action_t *ret) {
  (void)req;
  wharf_str header = wharf_config("header", "x-api-key");
  char *name = (char *)calloc(header.len + 1, 1);
  memcpy(name, header.ptr, header.len);
  wharf_str presented;
  bool found = wharf_request_header(name, &presented);
  if (!found || !key_listed(wharf_config("keys", ""), presented.ptr, presented.len)) {
    wharf_log(WHARF_PLUGIN_LOG_LEVEL_INFO, found ? "rejected: unknown API key" : "rejected: no API key");
    wharf_respond(ret, 401, "application/json",
                  "{\"error\":\"unauthorized\",\"message\":\"a valid API key is required\"}");
    return;
  }
  wharf_header_op *ops = wharf_ops(1);
  ops[0] = wharf_op_remove(header);
  wharf_continue(ret, ops, 1);
}
