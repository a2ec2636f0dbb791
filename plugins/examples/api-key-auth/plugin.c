// api-key-auth: answers 401 unless the request carries one of the configured keys.
//
// Config:
//   keys    comma-separated accepted keys (required; with none set, every request is refused)
//   header  the header carrying the key, default x-api-key
// The key header is removed before the request goes upstream: the upstream never sees secrets.
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

void exports_http_plugin_on_request(http_plugin_request_t *req, http_plugin_request_action_t *ret) {
  wharf_str header = wharf_config("header", "x-api-key");
  char *name = (char *)calloc(header.len + 1, 1);
  memcpy(name, header.ptr, header.len);
  const wharf_header *presented = wharf_find_header(&req->headers, name);
  if (presented == NULL || !key_listed(wharf_config("keys", ""), presented->value.ptr, presented->value.len)) {
    wharf_log(WHARF_PLUGIN_LOG_LEVEL_INFO, presented ? "rejected: unknown API key" : "rejected: no API key");
    wharf_respond(ret, 401, "application/json",
                  "{\"error\":\"unauthorized\",\"message\":\"a valid API key is required\"}");
    return;
  }
  wharf_header_op *ops = wharf_ops(1);
  ops[0] = wharf_op_remove(header);
  wharf_continue(ret, ops, 1);
}

void exports_http_plugin_on_response(http_plugin_response_t *resp, http_plugin_response_action_t *ret) {
  (void)resp;
  wharf_response_unchanged(ret);
}
