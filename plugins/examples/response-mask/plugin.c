// response-mask: masks card numbers in response bodies before they reach the client. Every run
// of 13 to 19 digits becomes "[card ending 1234]" (the body's length changes: the gateway sends
// it with its new length). Built for the `response-body-plugin` world
// (WHARF_RESPONSE_BODY_PLUGIN): the gateway holds the body back only for routes with such a
// plugin, up to plugin_body_max_bytes (a larger body passes unchanged).
#include "wharf.h"

void exports_http_plugin_on_request(http_plugin_request_t *req, http_plugin_request_action_t *ret) {
  (void)req;
  wharf_continue(ret, wharf_ops(0), 0);
}

void exports_http_plugin_on_response(http_plugin_response_t *resp, http_plugin_response_action_t *ret) {
  (void)resp;
  wharf_response_unchanged(ret);
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

bool exports_response_body_plugin_on_response_body(http_plugin_list_u8_t *body, http_plugin_list_u8_t *ret) {
  const uint8_t *p = body->ptr;
  size_t n = body->len, masked = 0;
  // At most one "[card ending dddd]" (18 bytes) per 13 input bytes: room for the worst case.
  uint8_t *out = (uint8_t *)malloc(n + n / 13 * 6 + 1);
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && is_digit(p[j])) j++;
    size_t run = j - i;
    if (run >= 13 && run <= 19) {
      memcpy(out + o, "[card ending ", 13);
      o += 13;
      memcpy(out + o, p + j - 4, 4);
      o += 4;
      out[o++] = ']';
      masked++;
      i = j;
    } else if (run > 0) {
      memcpy(out + o, p + i, run);
      o += run;
      i = j;
    } else {
      out[o++] = p[i++];
    }
  }
  if (masked == 0) {
    free(out);
    return false;  // unchanged: the gateway sends the body as it came
  }
  ret->ptr = out;
  ret->len = o;
  return true;
}
