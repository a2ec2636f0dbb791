// add-header: sets a request header before the upstream and a response header after it.
//
// Config (all optional):
//   request-header / request-value    default x-wharf-plugin: add-header
//   response-header / response-value  default x-wharf-served-by: wharf
//   debug-state = "1"                 also answer x-wharf-state: path=<request path>;calls=<n>,
//                                     showing state kept from on-request to on-response of one
//                                     request (calls is always 1: instances are per request).
#include "wharf.h"

static wharf_str seen_path;
static int calls;

void exports_http_plugin_on_request(http_plugin_request_t *req, http_plugin_request_action_t *ret) {
  calls++;
  seen_path = req->path;
  wharf_header_op *ops = wharf_ops(1);
  ops[0] = wharf_op_set(wharf_config("request-header", "x-wharf-plugin"), wharf_config("request-value", "add-header"));
  wharf_continue(ret, ops, 1);
}

void exports_http_plugin_on_response(http_plugin_response_t *resp, http_plugin_response_action_t *ret) {
  (void)resp;
  wharf_response_unchanged(ret);
  wharf_header_op *ops = wharf_ops(2);
  size_t n = 0;
  ops[n++] = wharf_op_set(wharf_config("response-header", "x-wharf-served-by"), wharf_config("response-value", "wharf"));
  if (wharf_str_eq(wharf_config("debug-state", "0"), "1")) {
    size_t cap = seen_path.len + 64;
    char *buf = (char *)malloc(cap);
    memcpy(buf, "path=", 5);
    memcpy(buf + 5, seen_path.ptr, seen_path.len);
    size_t len = 5 + seen_path.len;
    memcpy(buf + len, ";calls=", 7);
    len += 7;
    // calls is small: one decimal digit per instance in practice, but format any int.
    char digits[12];
    int d = 0, c = calls;
    do { digits[d++] = (char)('0' + c % 10); c /= 10; } while (c > 0 && d < 11);
    while (d > 0) buf[len++] = digits[--d];
    wharf_str name, value;
    http_plugin_string_set(&name, "x-wharf-state");
    value.ptr = (uint8_t *)buf;
    value.len = len;
    ops[n++] = wharf_op_set(name, value);
  }
  ret->headers.ptr = ops;
  ret->headers.len = n;
}
