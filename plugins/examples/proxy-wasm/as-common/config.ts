// Simple reading of a flat JSON object (the plugin configuration): enough for
// {"key":"string", "n": 123} with \" \\ \n \r \t escapes; no nesting, no \u.

// The string value of `key`, or null when absent or not a string.
export function jsonString(json: string, key: string): string | null {
  const at = valueStart(json, key);
  if (at < 0 || json.charCodeAt(at) != 34 /* " */) return null;
  let out = "";
  for (let i = at + 1; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c == 34) return out;
    if (c == 92 /* \ */ && i + 1 < json.length) {
      i++;
      const e = json.charCodeAt(i);
      if (e == 110 /* n */) { out += "\n"; continue; }
      if (e == 114 /* r */) { out += "\r"; continue; }
      if (e == 116 /* t */) { out += "\t"; continue; }
    }
    out += json.charAt(i);
  }
  return null;
}

// The unsigned integer value of `key`, or `fallback`.
export function jsonU32(json: string, key: string, fallback: u32): u32 {
  const at = valueStart(json, key);
  if (at < 0) return fallback;
  let n: u32 = 0;
  let digits = 0;
  for (let i = at; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c < 48 || c > 57) break;
    n = n * 10 + <u32>(c - 48);
    digits++;
  }
  return digits > 0 ? n : fallback;
}

// Index of the first character of the value of "key" (after the colon and spaces), or -1.
function valueStart(json: string, key: string): i32 {
  const quoted = '"' + key + '"';
  let from = 0;
  while (true) {
    const k = json.indexOf(quoted, from);
    if (k < 0) return -1;
    let i = k + quoted.length;
    while (i < json.length && isSpace(json.charCodeAt(i))) i++;
    if (i < json.length && json.charCodeAt(i) == 58 /* : */) {
      i++;
      while (i < json.length && isSpace(json.charCodeAt(i))) i++;
      return i;
    }
    from = k + 1;
  }
}

function isSpace(c: i32): bool {
  return c == 32 || c == 9 || c == 10 || c == 13;
}
