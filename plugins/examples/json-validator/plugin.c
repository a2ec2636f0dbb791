// json-validator: refuses a request whose body is not a JSON object (400), or lacks a required
// top-level field, before the upstream sees it; optionally wraps the body for the upstream.
// It reads the body (it imports wharf:plugin/body), so the gateway buffers the body for it, up to
// the tenant's plugin_body_max_bytes (413 beyond, before this plugin runs).
//
// Config:
//   required  comma-separated top-level fields that must be present (default: none)
//   envelope  when set, the upstream gets {"<envelope>": <the body>} (a new Content-Length)
// Requests without a body (GET, HEAD, ...) pass unchanged.
#include "wharf.h"

typedef struct {
  const uint8_t *p;
  size_t n, i;
  int depth;
} parser;

static void ws(parser *s) {
  while (s->i < s->n && (s->p[s->i] == ' ' || s->p[s->i] == '\t' || s->p[s->i] == '\r' || s->p[s->i] == '\n')) s->i++;
}

static bool lit(parser *s, const char *w) {
  size_t k = strlen(w);
  if (s->n - s->i < k || memcmp(s->p + s->i, w, k) != 0) return false;
  s->i += k;
  return true;
}

static bool string(parser *s) {
  if (s->i >= s->n || s->p[s->i] != '"') return false;
  for (s->i++; s->i < s->n; s->i++) {
    uint8_t c = s->p[s->i];
    if (c == '"') {
      s->i++;
      return true;
    }
    if (c < 0x20) return false;
    if (c == '\\') {
      if (++s->i >= s->n) return false;
      c = s->p[s->i];
      if (c == 'u') {
        for (int k = 0; k < 4; k++) {
          if (++s->i >= s->n) return false;
          uint8_t h = s->p[s->i];
          if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F'))) return false;
        }
      } else if (!strchr("\"\\/bfnrt", c)) {
        return false;
      }
    }
  }
  return false;
}

static bool digits(parser *s) {
  size_t start = s->i;
  while (s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9') s->i++;
  return s->i > start;
}

static bool number(parser *s) {
  if (s->i < s->n && s->p[s->i] == '-') s->i++;
  if (!digits(s)) return false;
  if (s->i < s->n && s->p[s->i] == '.') {
    s->i++;
    if (!digits(s)) return false;
  }
  if (s->i < s->n && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
    s->i++;
    if (s->i < s->n && (s->p[s->i] == '+' || s->p[s->i] == '-')) s->i++;
    if (!digits(s)) return false;
  }
  return true;
}

static bool value(parser *s);

// An object or array; `on_key` sees each top-level key of the outermost object.
static bool container(parser *s, bool object, void (*on_key)(const uint8_t *, size_t)) {
  if (++s->depth > 64) return false;  // deeper nesting is refused, not recursed into
  char close = object ? '}' : ']';
  s->i++;
  ws(s);
  if (s->i < s->n && s->p[s->i] == close) {
    s->i++;
    s->depth--;
    return true;
  }
  for (;;) {
    if (object) {
      size_t key = s->i;
      if (!string(s)) return false;
      if (on_key) on_key(s->p + key + 1, s->i - key - 2);
      ws(s);
      if (s->i >= s->n || s->p[s->i] != ':') return false;
      s->i++;
    }
    if (!value(s)) return false;
    ws(s);
    if (s->i < s->n && s->p[s->i] == ',') {
      s->i++;
      ws(s);
      continue;
    }
    if (s->i < s->n && s->p[s->i] == close) {
      s->i++;
      s->depth--;
      return true;
    }
    return false;
  }
}

static bool value(parser *s) {
  ws(s);
  if (s->i >= s->n) return false;
  switch (s->p[s->i]) {
    case '{': return container(s, true, NULL);
    case '[': return container(s, false, NULL);
    case '"': return string(s);
    case 't': return lit(s, "true");
    case 'f': return lit(s, "false");
    case 'n': return lit(s, "null");
    default: return number(s);
  }
}

// The required fields not yet seen, as a comma-separated list we strike names from.
static char missing[512];

static void strike(const uint8_t *key, size_t len) {
  size_t start = 0, n = strlen(missing);
  for (size_t i = 0; i <= n; i++) {
    if (i == n || missing[i] == ',') {
      if (i - start == len && len > 0 && memcmp(missing + start, key, len) == 0) {
        memset(missing + start, ',', len);  // struck: an empty name is never reported
      }
      start = i + 1;
    }
  }
}

static const char *first_missing(char *out, size_t cap) {
  size_t n = strlen(missing), start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || missing[i] == ',') {
      if (i > start) {
        size_t len = i - start < cap - 1 ? i - start : cap - 1;
        memcpy(out, missing + start, len);
        out[len] = 0;
        return out;
      }
      start = i + 1;
    }
  }
  return NULL;
}

static void refuse(http_plugin_request_action_t *ret, const char *message, const char *field) {
  char body[400] = "{\"error\":\"invalid_body\",\"message\":\"";
  strncat(body, message, 120);
  if (field) strncat(body, field, 120);
  strcat(body, "\"}");
  wharf_respond(ret, 400, "application/json", body);
}

void exports_http_plugin_on_request(http_plugin_request_t *req, http_plugin_request_action_t *ret) {
  (void)req;
  http_plugin_list_u8_t body;
  wharf_plugin_body_request_body(&body);
  if (body.len == 0) {
    wharf_continue(ret, wharf_ops(0), 0);
    return;
  }
  wharf_str required = wharf_config("required", "");
  size_t r = required.len < sizeof missing - 1 ? required.len : sizeof missing - 1;
  memcpy(missing, required.ptr, r);
  missing[r] = 0;
  parser s = {body.ptr, body.len, 0, 0};
  ws(&s);
  bool ok = s.i < s.n && s.p[s.i] == '{' && container(&s, true, strike);
  ws(&s);
  if (!ok || s.i != s.n) {
    refuse(ret, "the body is not a JSON object", NULL);
    return;
  }
  char field[128];
  if (first_missing(field, sizeof field)) {
    refuse(ret, "missing required field: ", field);
    return;
  }
  wharf_str envelope = wharf_config("envelope", "");
  if (envelope.len > 0 && envelope.len < 64) {
    size_t n = envelope.len + body.len + 6;
    uint8_t *wrapped = (uint8_t *)malloc(n);
    size_t o = 0;
    wrapped[o++] = '{';
    wrapped[o++] = '"';
    memcpy(wrapped + o, envelope.ptr, envelope.len);
    o += envelope.len;
    wrapped[o++] = '"';
    wrapped[o++] = ':';
    memcpy(wrapped + o, body.ptr, body.len);
    o += body.len;
    wrapped[o++] = '}';
    http_plugin_list_u8_t out = {wrapped, o};
    wharf_plugin_types_host_error_t err;
    if (!wharf_plugin_body_set_request_body(&out, &err)) {
      wharf_respond_host_error(ret, 413, "body_too_large", &err);
      return;
    }
  }
  wharf_continue(ret, wharf_ops(0), 0);
}

void exports_http_plugin_on_response(http_plugin_response_t *resp, http_plugin_response_action_t *ret) {
  (void)resp;
  wharf_response_unchanged(ret);
}
