// path-rewrite: replaces a path prefix before the request goes upstream (JavaScript, built with
// jco's QuickJS backend for the `request-filter` world: request phase only, no header is copied
// into the call, and the instance ends before the upstream).
//
// Config:
//   from   the prefix to replace (default /old)
//   to     its replacement (default /new)
// The original path is passed upstream in x-original-path.
import { get } from "wharf:plugin/config@0.1.0";

// QuickJS has no TextEncoder: header values are bytes, so encode UTF-8 by hand.
function utf8(text) {
  const out = [];
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

export function handleRequest(req) {
  const from = get("from") ?? "/old";
  const to = get("to") ?? "/new";
  const path = req.path;
  const matches = path === from || path.startsWith(from.endsWith("/") ? from : from + "/") || path.startsWith(from + "?");
  if (!matches) {
    return { tag: "continue", val: { headers: [], path: undefined } };
  }
  const rewritten = to + path.slice(from.length);
  return {
    tag: "continue",
    val: {
      headers: [{ tag: "set", val: { name: "x-original-path", value: utf8(path) } }],
      path: rewritten.startsWith("/") ? rewritten : "/" + rewritten,
    },
  };
}
