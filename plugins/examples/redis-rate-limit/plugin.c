// redis-rate-limit: a fixed-window request limit per API key, counted in the tenant's Redis.
//
// Config:
//   limit           requests per window (default 10)
//   window-seconds  window length (default 60)
//   key-header      header identifying the caller (default x-api-key; else the client address)
// Over the limit: 429 with Retry-After (the window's remaining seconds). Every response gets
// X-RateLimit-Limit and X-RateLimit-Remaining, declared with the request (`response-edits`):
// a `request-filter` has no response phase, so its instance ends before the upstream is called.
// If Redis fails the request is refused with 503 naming the host error.
#include "wharf.h"

static int64_t config_int(const char *key, int64_t fallback) {
  wharf_str v = wharf_config(key, "");
  if (v.len == 0) return fallback;
  int64_t n = 0;
  for (size_t i = 0; i < v.len; i++) {
    if (v.ptr[i] < '0' || v.ptr[i] > '9') return fallback;
    n = n * 10 + (v.ptr[i] - '0');
  }
  return n;
}

void exports_request_filter_handle_request(request_filter_request_head_t *req,
                                           request_filter_request_action_t *ret) {
  int64_t limit = config_int("limit", 10);
  int64_t window = config_int("window-seconds", 60);
  wharf_str header = wharf_config("key-header", "x-api-key");
  char *hname = (char *)calloc(header.len + 1, 1);
  memcpy(hname, header.ptr, header.len);

  // Key: rl:<caller>. The host puts it in the tenant's namespace.
  wharf_str who;
  if (!wharf_request_header(hname, &who)) who = req->client_addr;
  wharf_str key = {(uint8_t *)malloc(who.len + 3), who.len + 3};
  memcpy(key.ptr, "rl:", 3);
  memcpy(key.ptr + 3, who.ptr, who.len);

  wharf_plugin_redis_redis_value_t v;
  wharf_plugin_types_host_error_t err;
  if (!wharf_redis("INCR", &key, 1, &v, &err)) {
    wharf_respond_host_error(ret, 503, "rate_limiter_unavailable", &err);
    return;
  }
  int64_t count = v.tag == WHARF_PLUGIN_REDIS_REDIS_VALUE_INT ? v.val.int_ : 0;
  if (count == 1) {
    wharf_str args[2] = {key, wharf_itoa(window)};
    if (!wharf_redis("EXPIRE", args, 2, &v, &err)) {
      wharf_respond_host_error(ret, 503, "rate_limiter_unavailable", &err);
      return;
    }
  }
  if (count > limit) {
    int64_t retry = window;
    if (wharf_redis("TTL", &key, 1, &v, &err) && v.tag == WHARF_PLUGIN_REDIS_REDIS_VALUE_INT && v.val.int_ > 0) {
      retry = v.val.int_;
    }
    wharf_respond(ret, 429, "application/json", "{\"error\":\"rate_limited\",\"message\":\"too many requests\"}");
    wharf_plugin_types_reply_t *r = &ret->val.respond;
    wharf_header *hs = (wharf_header *)calloc(2, sizeof(wharf_header));
    hs[0] = r->headers.ptr[0];
    wharf_str retry_s = wharf_itoa(retry);
    hs[1] = wharf_make_header(wharf_str_lit("retry-after"), retry_s.ptr, retry_s.len);
    r->headers.ptr = hs;
    r->headers.len = 2;
    return;
  }
  int64_t remaining = limit - count < 0 ? 0 : limit - count;
  wharf_header_op response[2];
  response[0] = wharf_op_set(wharf_str_lit("x-ratelimit-limit"), wharf_itoa(limit));
  response[1] = wharf_op_set(wharf_str_lit("x-ratelimit-remaining"), wharf_itoa(remaining));
  if (!wharf_declare_response(response, 2, &err)) {
    // Two fixed header names and decimal values: only a gateway that changed its rules refuses.
    wharf_log(WHARF_PLUGIN_LOG_LEVEL_WARN, "x-ratelimit headers refused");
  }
  wharf_continue(ret, wharf_ops(0), 0);
}
