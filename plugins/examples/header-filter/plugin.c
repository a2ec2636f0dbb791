// header-filter: add-header's work as a `request-filter`: sets a request header before the
// upstream, and declares the response header in the same call (`response-edits`), so it has no
// response phase. Its instance ends before the upstream is called and it is called once per
// request, where add-header (an `http-plugin`) is called twice and held across the upstream call.
//
// Config (all optional, as add-header's):
//   request-header / request-value    default x-wharf-plugin: add-header
//   response-header / response-value  default x-wharf-served-by: wharf
// A response edit the gateway refuses (say a response-header that is not a header name) is
// answered 500 naming why, before the upstream is called.
#include "wharf.h"

void exports_request_filter_handle_request(request_filter_request_head_t *req,
                                           request_filter_request_action_t *ret) {
  (void)req;
  wharf_header_op response[1];
  response[0] = wharf_op_set(wharf_config("response-header", "x-wharf-served-by"),
                             wharf_config("response-value", "wharf"));
  wharf_plugin_types_host_error_t err;
  if (!wharf_declare_response(response, 1, &err)) {
    const char *why = "";
    size_t why_len = 0;
    if (err.tag == WHARF_PLUGIN_TYPES_HOST_ERROR_INVALID) {
      why = (const char *)err.val.invalid.ptr;
      why_len = err.val.invalid.len;
    }
    const char *head = "{\"error\":\"response_edit_refused\",\"reason\":\"";
    char *body = (char *)malloc(strlen(head) + why_len + 3);
    strcpy(body, head);
    size_t n = strlen(head);
    // The reason is the gateway's own text: printable ASCII; quotes would break the JSON.
    for (size_t i = 0; i < why_len; i++) body[n++] = why[i] == '"' ? '\'' : why[i];
    body[n++] = '"';
    body[n++] = '}';
    body[n] = 0;
    wharf_respond(ret, 500, "application/json", body);
    return;
  }
  wharf_header_op *ops = wharf_ops(1);
  ops[0] = wharf_op_set(wharf_config("request-header", "x-wharf-plugin"), wharf_config("request-value", "add-header"));
  wharf_continue(ret, ops, 1);
}
