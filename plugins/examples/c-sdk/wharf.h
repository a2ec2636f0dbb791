// Small helpers for writing Wharf plugins in C on top of the wit-bindgen bindings
// (http_plugin.h, generated from plugins/wit). Header-only.
//
// Ownership: the generated post-return code frees everything an export returns, so every
// builder below copies its inputs into fresh heap memory. Pass them literals or borrowed
// strings freely; never put a literal straight into a returned struct yourself.
#ifndef WHARF_H
#define WHARF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// A plugin that reads the request body is built for the `body-plugin` world (wit-bindgen names
// its bindings after the world): define WHARF_BODY_PLUGIN and the names below stay the same.
// A request-only plugin is built for the `request-filter` world: define WHARF_REQUEST_FILTER.
// It exports `handle-request` (see exports_request_filter_handle_request) and reads headers with
// wharf_request_header.
#if defined(WHARF_REQUEST_FILTER)
#include "request_filter.h"
#define http_plugin_string_t request_filter_string_t
#define http_plugin_string_set request_filter_string_set
#define http_plugin_string_dup request_filter_string_dup
#define http_plugin_list_u8_t request_filter_list_u8_t
#define http_plugin_list_list_u8_t request_filter_list_list_u8_t
#define http_plugin_request_action_t request_filter_request_action_t
#elif defined(WHARF_RESPONSE_BODY_PLUGIN)
// A plugin that rewrites response bodies (`response-body-plugin`): it also exports
// exports_response_body_plugin_on_response_body.
#include "response_body_plugin.h"
#define http_plugin_string_t response_body_plugin_string_t
#define http_plugin_string_set response_body_plugin_string_set
#define http_plugin_string_dup response_body_plugin_string_dup
#define http_plugin_list_u8_t response_body_plugin_list_u8_t
#define http_plugin_list_list_u8_t response_body_plugin_list_list_u8_t
#define http_plugin_request_t response_body_plugin_request_t
#define http_plugin_request_action_t response_body_plugin_request_action_t
#define http_plugin_response_t response_body_plugin_response_t
#define http_plugin_response_action_t response_body_plugin_response_action_t
#define exports_http_plugin_on_request exports_response_body_plugin_on_request
#define exports_http_plugin_on_response exports_response_body_plugin_on_response
#elif defined(WHARF_BODY_PLUGIN)
#include "body_plugin.h"
#define http_plugin_string_t body_plugin_string_t
#define http_plugin_string_set body_plugin_string_set
#define http_plugin_string_dup body_plugin_string_dup
#define http_plugin_list_u8_t body_plugin_list_u8_t
#define http_plugin_list_list_u8_t body_plugin_list_list_u8_t
#define http_plugin_request_t body_plugin_request_t
#define http_plugin_request_action_t body_plugin_request_action_t
#define http_plugin_response_t body_plugin_response_t
#define http_plugin_response_action_t body_plugin_response_action_t
#define exports_http_plugin_on_request exports_body_plugin_on_request
#define exports_http_plugin_on_response exports_body_plugin_on_response
#else
#include "http_plugin.h"
#endif

typedef http_plugin_string_t wharf_str;
typedef wharf_plugin_types_header_t wharf_header;
typedef wharf_plugin_types_header_op_t wharf_header_op;

static inline bool wharf_str_eq(wharf_str s, const char *c) {
  size_t n = strlen(c);
  return s.len == n && memcmp(s.ptr, c, n) == 0;
}

static inline bool wharf_str_eq_ci(const uint8_t *a, size_t alen, const char *b) {
  size_t n = strlen(b);
  if (alen != n) return false;
  for (size_t i = 0; i < n; i++) {
    uint8_t x = a[i], y = (uint8_t)b[i];
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

// The first header with this name (case-insensitive), or NULL.
static inline const wharf_header *wharf_find_header(const wharf_plugin_types_list_header_t *list, const char *name) {
  for (size_t i = 0; i < list->len; i++) {
    if (wharf_str_eq_ci(list->ptr[i].name.ptr, list->ptr[i].name.len, name)) return &list->ptr[i];
  }
  return NULL;
}

// The plugin's config value for `key`, or `fallback` (a C string) when unset.
static inline wharf_str wharf_config(const char *key, const char *fallback) {
  wharf_str k, v;
  http_plugin_string_set(&k, key);
  if (wharf_plugin_config_get(&k, &v)) return v;
  http_plugin_string_dup(&v, fallback);
  return v;
}

static inline void wharf_log(wharf_plugin_log_level_t level, const char *msg) {
  wharf_str s;
  http_plugin_string_set(&s, msg);
  wharf_plugin_log_log(level, &s);
}

// A heap copy of `len` bytes (never NULL, so it is always safe to free).
static inline uint8_t *wharf_copy(const uint8_t *src, size_t len) {
  uint8_t *p = (uint8_t *)malloc(len ? len : 1);
  if (len) memcpy(p, src, len);
  return p;
}

static inline wharf_str wharf_str_copy(wharf_str s) {
  wharf_str out = {wharf_copy(s.ptr, s.len), s.len};
  return out;
}

static inline wharf_str wharf_str_lit(const char *s) {
  wharf_str out;
  http_plugin_string_dup(&out, s);
  return out;
}

static inline wharf_header wharf_make_header(wharf_str name, const uint8_t *value, size_t len) {
  wharf_header h;
  h.name = wharf_str_copy(name);
  h.value.ptr = wharf_copy(value, len);
  h.value.len = len;
  return h;
}

static inline wharf_header_op wharf_op_set(wharf_str name, wharf_str value) {
  wharf_header_op op;
  op.tag = WHARF_PLUGIN_TYPES_HEADER_OP_SET;
  op.val.set = wharf_make_header(name, value.ptr, value.len);
  return op;
}

static inline wharf_header_op wharf_op_remove(wharf_str name) {
  wharf_header_op op;
  op.tag = WHARF_PLUGIN_TYPES_HEADER_OP_REMOVE;
  op.val.remove = wharf_str_copy(name);
  return op;
}

// An array of `n` header ops that outlives the call (the host reads it after we return).
static inline wharf_header_op *wharf_ops(size_t n) {
  return (wharf_header_op *)calloc(n ? n : 1, sizeof(wharf_header_op));
}

static inline void wharf_continue(http_plugin_request_action_t *ret, wharf_header_op *ops, size_t n) {
  ret->tag = WHARF_PLUGIN_TYPES_REQUEST_ACTION_CONTINUE;
  ret->val.continue_.headers.ptr = ops;
  ret->val.continue_.headers.len = n;
  ret->val.continue_.path.is_some = false;
}

static inline void wharf_respond(http_plugin_request_action_t *ret, uint16_t status, const char *content_type, const char *body) {
  ret->tag = WHARF_PLUGIN_TYPES_REQUEST_ACTION_RESPOND;
  wharf_plugin_types_reply_t *r = &ret->val.respond;
  r->status = status;
  wharf_header *h = (wharf_header *)calloc(1, sizeof(wharf_header));
  wharf_str name;
  http_plugin_string_set(&name, "content-type");
  h[0] = wharf_make_header(name, (const uint8_t *)content_type, strlen(content_type));
  r->headers.ptr = h;
  r->headers.len = 1;
  r->body.len = strlen(body);
  r->body.ptr = wharf_copy((const uint8_t *)body, r->body.len);
}

// Decimal text of `v` in a fresh heap string.
static inline wharf_str wharf_itoa(int64_t v) {
  char buf[24];
  int n = 0;
  uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
  do { buf[n++] = (char)('0' + u % 10); u /= 10; } while (u > 0);
  if (v < 0) buf[n++] = '-';
  wharf_str out = {(uint8_t *)malloc((size_t)n), (size_t)n};
  for (int i = 0; i < n; i++) out.ptr[i] = (uint8_t)buf[n - 1 - i];
  return out;
}

// The name of a host error, for messages: "quota-exceeded", "backend-unavailable", ...
static inline const char *wharf_host_error_name(const wharf_plugin_types_host_error_t *e) {
  switch (e->tag) {
    case WHARF_PLUGIN_TYPES_HOST_ERROR_QUOTA_EXCEEDED: return "quota-exceeded";
    case WHARF_PLUGIN_TYPES_HOST_ERROR_TIMEOUT: return "timeout";
    case WHARF_PLUGIN_TYPES_HOST_ERROR_DENIED: return "denied";
    case WHARF_PLUGIN_TYPES_HOST_ERROR_BACKEND_UNAVAILABLE: return "backend-unavailable";
    case WHARF_PLUGIN_TYPES_HOST_ERROR_INVALID: return "invalid";
    default: return "backend";
  }
}

// A JSON error reply {"error": code, "host_error": <kind>} with the given status.
static inline void wharf_respond_host_error(http_plugin_request_action_t *ret, uint16_t status, const char *code,
                                            const wharf_plugin_types_host_error_t *e) {
  const char *kind = wharf_host_error_name(e);
  size_t n = strlen(code) + strlen(kind) + 40;
  char *body = (char *)malloc(n);
  strcpy(body, "{\"error\":\"");
  strcat(body, code);
  strcat(body, "\",\"host_error\":\"");
  strcat(body, kind);
  strcat(body, "\"}");
  wharf_respond(ret, status, "application/json", body);
}

// Runs a Redis command with up to 4 byte-string arguments.
static inline bool wharf_redis(const char *cmd, wharf_str *args, size_t nargs, wharf_plugin_redis_redis_value_t *ret,
                               wharf_plugin_types_host_error_t *err) {
  wharf_str name;
  http_plugin_string_set(&name, cmd);
  http_plugin_list_u8_t list[4];
  for (size_t i = 0; i < nargs && i < 4; i++) {
    list[i].ptr = args[i].ptr;
    list[i].len = args[i].len;
  }
  http_plugin_list_list_u8_t l = {list, nargs};
  return wharf_plugin_redis_command(&name, &l, ret, err);
}

// Sends an HTTP request (`url` must be on the attachment's allowed_outbound_hosts) with at most
// one header and waits for the whole response. Arguments are borrowed for the call.
static inline bool wharf_http(const char *method, wharf_str url, const char *header_name, wharf_str header_value,
                              const uint8_t *body, size_t body_len,
                              wharf_plugin_http_incoming_response_t *ret, wharf_plugin_types_host_error_t *err) {
  wharf_plugin_http_outgoing_request_t req;
  http_plugin_string_set(&req.method, method);
  req.url = url;
  wharf_header h;
  req.headers.ptr = &h;
  req.headers.len = 0;
  if (header_name != NULL) {
    http_plugin_string_set(&h.name, header_name);
    h.value.ptr = header_value.ptr;
    h.value.len = header_value.len;
    req.headers.len = 1;
  }
  req.body.ptr = (uint8_t *)body;
  req.body.len = body_len;
  req.timeout_ms.is_some = false;
  return wharf_plugin_http_send(&req, ret, err);
}

#ifndef WHARF_REQUEST_FILTER
static inline void wharf_response_unchanged(http_plugin_response_action_t *ret) {
  ret->status.is_some = false;
  ret->headers.ptr = NULL;
  ret->headers.len = 0;
}
#else
// The first value of the request header `name` (any case), for a request filter: copied into
// the plugin only now, when asked. False when the request has no such header.
static inline bool wharf_request_header(const char *name, wharf_str *value) {
  wharf_str n;
  http_plugin_string_set(&n, name);
  http_plugin_list_list_u8_t values;
  wharf_plugin_request_get(&n, &values);
  if (values.len == 0) return false;
  value->ptr = values.ptr[0].ptr;
  value->len = values.ptr[0].len;
  return true;
}

// Declares the response edits of this request (`response-edits`): the gateway applies `ops` to
// the response's header when it comes, without calling the plugin again (a filter has no
// response phase). The ops are borrowed for the call. False when refused: `err` says why
// (`invalid`, naming what).
static inline bool wharf_declare_response(wharf_header_op *ops, size_t n, wharf_plugin_types_host_error_t *err) {
  wharf_plugin_response_edits_response_action_t action;
  action.status.is_some = false;
  action.headers.ptr = ops;
  action.headers.len = n;
  return wharf_plugin_response_edits_declare(&action, err);
}
#endif

#endif
