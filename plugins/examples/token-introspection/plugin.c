// token-introspection: OAuth 2.0 token introspection (RFC 7662) before the upstream. The bearer
// token of each request is POSTed to the introspection endpoint; an active token's subject goes
// upstream in a header, anything else is refused.
//
// Config:
//   url     the introspection endpoint (required), e.g. https://auth.example.com/introspect; it
//           must be on the attachment's allowed_outbound_hosts
//   header  the header carrying the subject upstream (default x-auth-subject)
// Answers: 401 without a bearer token or for an inactive one; 502 when the endpoint answers
// anything but 200; 503 naming the host error when it cannot be reached.
#include "wharf.h"

static size_t skip_space(const uint8_t *p, size_t i, size_t n) {
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
  return i;
}

// Index just past `"key"` and its colon in a JSON object's text, or 0 when absent.
static size_t json_value_at(const uint8_t *p, size_t n, const char *key) {
  size_t k = strlen(key);
  for (size_t i = 0; i + k + 2 <= n; i++) {
    if (p[i] == '"' && memcmp(p + i + 1, key, k) == 0 && p[i + k + 1] == '"') {
      size_t j = skip_space(p, i + k + 2, n);
      if (j < n && p[j] == ':') return skip_space(p, j + 1, n);
    }
  }
  return 0;
}

// `token=<token>`, form-encoded.
static wharf_str form_body(const uint8_t *token, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  uint8_t *out = (uint8_t *)malloc(6 + 3 * len);
  memcpy(out, "token=", 6);
  size_t o = 6;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = token[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out[o++] = c;
    } else {
      out[o++] = '%';
      out[o++] = (uint8_t)hex[c >> 4];
      out[o++] = (uint8_t)hex[c & 15];
    }
  }
  wharf_str s = {out, o};
  return s;
}

void exports_http_plugin_on_request(http_plugin_request_t *req, http_plugin_request_action_t *ret) {
  const wharf_header *auth = wharf_find_header(&req->headers, "authorization");
  if (auth == NULL || auth->value.len <= 7 || !wharf_str_eq_ci(auth->value.ptr, 7, "bearer ")) {
    wharf_respond(ret, 401, "application/json", "{\"error\":\"unauthorized\",\"message\":\"a bearer token is required\"}");
    return;
  }
  wharf_str body = form_body(auth->value.ptr + 7, auth->value.len - 7);
  wharf_plugin_http_incoming_response_t resp;
  wharf_plugin_types_host_error_t err;
  if (!wharf_http("POST", wharf_config("url", ""), "content-type", wharf_str_lit("application/x-www-form-urlencoded"),
                  body.ptr, body.len, &resp, &err)) {
    wharf_respond_host_error(ret, 503, "introspection_unavailable", &err);
    return;
  }
  if (resp.status != 200) {
    wharf_respond(ret, 502, "application/json", "{\"error\":\"introspection_failed\"}");
    return;
  }
  const uint8_t *p = resp.body.ptr;
  size_t n = resp.body.len;
  size_t active = json_value_at(p, n, "active");
  if (active == 0 || active + 4 > n || memcmp(p + active, "true", 4) != 0) {
    wharf_respond(ret, 401, "application/json", "{\"error\":\"unauthorized\",\"message\":\"the token is not active\"}");
    return;
  }
  wharf_header_op *ops = wharf_ops(1);
  size_t n_ops = 0;
  size_t sub = json_value_at(p, n, "sub");
  wharf_str header = wharf_config("header", "x-auth-subject");
  if (sub != 0 && p[sub] == '"') {
    size_t end = sub + 1;
    while (end < n && p[end] != '"' && p[end] != '\\') end++;
    if (end < n && p[end] == '"') {
      wharf_str subject = {(uint8_t *)p + sub + 1, end - sub - 1};
      ops[n_ops++] = wharf_op_set(header, subject);
    }
  }
  if (n_ops == 0) ops[n_ops++] = wharf_op_remove(header);  // never pass a client's own value on
  wharf_continue(ret, ops, n_ops);
}

void exports_http_plugin_on_response(http_plugin_response_t *resp, http_plugin_response_action_t *ret) {
  (void)resp;
  wharf_response_unchanged(ret);
}
