// hostile: a deliberately misbehaving plugin, for the noisy-neighbour load scenario and tests.
// NOT an example to copy. Its `on-request` does what config `mode` says:
//   spin      loop on a cheap host call (config get) until the gateway stops it: costs little
//             fuel, so it runs into the deadline
//   fuel      pure computation until the fuel budget is gone
//   memory    allocate until refused, then trap like an out-of-memory abort
//   trap      execute `unreachable` at once
//   log-spam  write 100,000 log lines (the gateway keeps 32), then continue
//   fetch     send `count` (config, default 1) GETs to the URL in request header x-fetch-url (or
//             config `url`), then answer 200 with what happened as JSON:
//             {"ok":N,"status":S,"bytes":B,"error":"<host error of the last failure>","detail":"..."}
// Any other value: continue unchanged.
#include "wharf.h"

static volatile uint64_t sink;

static size_t parse_count(wharf_str s) {
  size_t n = 0;
  for (size_t i = 0; i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9'; i++) n = n * 10 + (s.ptr[i] - '0');
  return n ? n : 1;
}

// The host error's message (when it has one), with quotes and backslashes made harmless for JSON.
static void error_detail(const wharf_plugin_types_host_error_t *e, char *out, size_t cap) {
  const http_plugin_string_t *m = NULL;
  switch (e->tag) {
    case WHARF_PLUGIN_TYPES_HOST_ERROR_QUOTA_EXCEEDED: m = &e->val.quota_exceeded; break;
    case WHARF_PLUGIN_TYPES_HOST_ERROR_DENIED: m = &e->val.denied; break;
    case WHARF_PLUGIN_TYPES_HOST_ERROR_INVALID: m = &e->val.invalid; break;
    case WHARF_PLUGIN_TYPES_HOST_ERROR_BACKEND: m = &e->val.backend; break;
    default: break;
  }
  size_t n = 0;
  for (size_t i = 0; m != NULL && i < m->len && n + 1 < cap; i++) {
    uint8_t c = m->ptr[i];
    out[n++] = (c == '"' || c == '\\' || c < 32) ? '\'' : (char)c;
  }
  out[n] = 0;
}

static void append(char *out, const char *s) { strcat(out, s); }

static void append_num(char *out, size_t v) {
  wharf_str s = wharf_itoa((int64_t)v);
  strncat(out, (const char *)s.ptr, s.len);
  free(s.ptr);
}

static void fetch(http_plugin_request_t *req, http_plugin_request_action_t *ret) {
  const wharf_header *h = wharf_find_header(&req->headers, "x-fetch-url");
  wharf_str url = h ? (wharf_str){h->value.ptr, h->value.len} : wharf_config("url", "");
  size_t count = parse_count(wharf_config("count", "1"));
  size_t ok = 0, bytes = 0;
  unsigned status = 0;
  const char *kind = "";
  static char detail[512];
  detail[0] = 0;
  for (size_t i = 0; i < count; i++) {
    wharf_plugin_http_incoming_response_t resp;
    wharf_plugin_types_host_error_t err;
    if (wharf_http("GET", url, NULL, url, NULL, 0, &resp, &err)) {
      ok++;
      status = resp.status;
      bytes += resp.body.len;
      wharf_plugin_http_incoming_response_free(&resp);
    } else {
      kind = wharf_host_error_name(&err);
      error_detail(&err, detail, sizeof detail);
      wharf_plugin_types_host_error_free(&err);
    }
  }
  // No stdio here (it would import WASI): the JSON is put together by hand.
  char *body = (char *)calloc(800, 1);
  append(body, "{\"ok\":");
  append_num(body, ok);
  append(body, ",\"status\":");
  append_num(body, status);
  append(body, ",\"bytes\":");
  append_num(body, bytes);
  append(body, ",\"error\":\"");
  append(body, kind);
  append(body, "\",\"detail\":\"");
  append(body, detail);
  append(body, "\"}");
  wharf_respond(ret, 200, "application/json", body);
}

void exports_http_plugin_on_request(http_plugin_request_t *req, http_plugin_request_action_t *ret) {
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
  } else if (wharf_str_eq(mode, "fetch")) {
    fetch(req, ret);
    return;
  } else if (wharf_str_eq(mode, "log-spam")) {
    for (int i = 0; i < 100000; i++) wharf_log(WHARF_PLUGIN_LOG_LEVEL_INFO, "spam spam spam spam spam spam spam spam");
  }
  wharf_continue(ret, wharf_ops(0), 0);
}

void exports_http_plugin_on_response(http_plugin_response_t *resp, http_plugin_response_action_t *ret) {
  (void)resp;
  wharf_response_unchanged(ret);
}
