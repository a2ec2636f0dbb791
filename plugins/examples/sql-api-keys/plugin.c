// sql-api-keys: looks the presented API key up in the tenant's own SQL table
//   api_keys (key TEXT PRIMARY KEY, customer_id TEXT NOT NULL, active BOOLEAN/INTEGER NOT NULL)
// and answers 401 (unknown or missing key) or 403 (inactive key); otherwise the request goes on
// with X-Customer-Id set and the key header removed. The same statement runs on Postgres, SQLite
// and MariaDB: `key` is reserved in MariaDB, so the column is named through its table
// (`api_keys.key`); on MariaDB create it as `key` VARCHAR(64).
//
// Config:
//   header  the header carrying the key (default x-api-key)
// If SQL fails the request is refused with 503 naming the host error.
#include "wharf.h"

void exports_http_plugin_on_request(http_plugin_request_t *req, http_plugin_request_action_t *ret) {
  wharf_str header = wharf_config("header", "x-api-key");
  char *hname = (char *)calloc(header.len + 1, 1);
  memcpy(hname, header.ptr, header.len);
  const wharf_header *h = wharf_find_header(&req->headers, hname);
  if (h == NULL) {
    wharf_respond(ret, 401, "application/json", "{\"error\":\"unauthorized\",\"message\":\"an API key is required\"}");
    return;
  }
  wharf_plugin_sql_sql_value_t param;
  param.tag = WHARF_PLUGIN_SQL_SQL_VALUE_TEXT;
  param.val.text.ptr = h->value.ptr;
  param.val.text.len = h->value.len;
  wharf_plugin_sql_list_sql_value_t params = {&param, 1};
  wharf_str stmt = wharf_str_lit("SELECT customer_id, active FROM api_keys WHERE api_keys.key = $1");
  wharf_plugin_sql_row_set_t rows;
  wharf_plugin_types_host_error_t err;
  if (!wharf_plugin_sql_query(&stmt, &params, &rows, &err)) {
    wharf_respond_host_error(ret, 503, "key_store_unavailable", &err);
    return;
  }
  if (rows.rows.len == 0) {
    wharf_respond(ret, 401, "application/json", "{\"error\":\"unauthorized\",\"message\":\"unknown API key\"}");
    return;
  }
  wharf_plugin_sql_sql_value_t *row = rows.rows.ptr[0].ptr;
  bool active = (row[1].tag == WHARF_PLUGIN_SQL_SQL_VALUE_BOOLEAN && row[1].val.boolean) ||
                (row[1].tag == WHARF_PLUGIN_SQL_SQL_VALUE_INT64 && row[1].val.int64 != 0);
  if (!active) {
    wharf_respond(ret, 403, "application/json", "{\"error\":\"forbidden\",\"message\":\"this API key is disabled\"}");
    return;
  }
  wharf_str customer = row[0].tag == WHARF_PLUGIN_SQL_SQL_VALUE_TEXT ? row[0].val.text
                       : row[0].tag == WHARF_PLUGIN_SQL_SQL_VALUE_INT64 ? wharf_itoa(row[0].val.int64)
                                                                        : wharf_str_lit("unknown");
  wharf_header_op *ops = wharf_ops(2);
  ops[0] = wharf_op_set(wharf_str_lit("x-customer-id"), customer);
  ops[1] = wharf_op_remove(header);
  wharf_continue(ret, ops, 2);
}

void exports_http_plugin_on_response(http_plugin_response_t *resp, http_plugin_response_action_t *ret) {
  (void)resp;
  wharf_response_unchanged(ret);
}
