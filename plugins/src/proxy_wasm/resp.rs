//! RESP (the Redis protocol), as Higress's Redis extension speaks it: a module sends a command
//! as a RESP array of bulk strings (`proxy_redis_call`) and reads the reply as RESP bytes
//! (buffer type 9). The host decodes the command (bounded: the count and every length are
//! checked against the bytes given) and runs it through the tenant's Redis capability, whose
//! allow-list, namespace and quotas apply unchanged; the reply is encoded back.

use crate::capabilities::redis::{RedisScalar, RedisValue};

/// Arguments one command may have.
const MAX_ARGS: usize = 1024;

/// A command: its name and arguments; `None` if the bytes are not a RESP array of bulk strings.
pub fn decode_command(bytes: &[u8]) -> Option<(String, Vec<Vec<u8>>)> {
    let mut at = 0;
    let n = header(bytes, &mut at, b'*')?;
    if n == 0 || n > MAX_ARGS {
        return None;
    }
    let mut parts = Vec::with_capacity(n);
    for _ in 0..n {
        let len = header(bytes, &mut at, b'$')?;
        let end = at.checked_add(len)?;
        if bytes.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        parts.push(bytes[at..end].to_vec());
        at = end + 2;
    }
    if at != bytes.len() {
        return None;
    }
    let name = String::from_utf8(parts.remove(0)).ok()?;
    Some((name, parts))
}

/// `<kind><number>\r\n` at `at`.
fn header(bytes: &[u8], at: &mut usize, kind: u8) -> Option<usize> {
    if *bytes.get(*at)? != kind {
        return None;
    }
    let rest = &bytes[*at + 1..];
    let line = rest.windows(2).position(|w| w == b"\r\n")?;
    let n = std::str::from_utf8(&rest[..line]).ok()?.parse().ok()?;
    *at += 1 + line + 2;
    Some(n)
}

/// A reply as RESP.
pub fn encode(value: &RedisValue) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        RedisValue::Nil => out.extend_from_slice(b"$-1\r\n"),
        RedisValue::Status(s) => scalar(&mut out, &RedisScalar::Status(s.clone())),
        RedisValue::Int(i) => scalar(&mut out, &RedisScalar::Int(*i)),
        RedisValue::Bulk(b) => scalar(&mut out, &RedisScalar::Bulk(b.clone())),
        RedisValue::Array(items) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in items {
                scalar(&mut out, item);
            }
        }
    }
    out
}

/// An error reply, as a Redis server would give it.
pub fn error(message: &str) -> Vec<u8> {
    let line: String = message
        .chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .collect();
    format!("-ERR {line}\r\n").into_bytes()
}

fn scalar(out: &mut Vec<u8>, value: &RedisScalar) {
    match value {
        RedisScalar::Nil => out.extend_from_slice(b"$-1\r\n"),
        RedisScalar::Status(s) => {
            out.push(b'+');
            out.extend(s.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
        RedisScalar::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
        RedisScalar::Bulk(b) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_decode_within_the_bytes_given() {
        let cmd = b"*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$2\r\n10\r\n";
        let (name, args) = decode_command(cmd).unwrap();
        assert_eq!(name, "INCRBY");
        assert_eq!(args, [b"k".to_vec(), b"10".to_vec()]);
        assert_eq!(decode_command(b"*2\r\n$3\r\nGET\r\n"), None, "truncated");
        assert_eq!(
            decode_command(b"*1\r\n$99999\r\nGET\r\n"),
            None,
            "a length past the end"
        );
        assert_eq!(decode_command(b"*100000\r\n"), None, "too many");
        assert_eq!(decode_command(b"PING\r\n"), None, "inline commands");
    }

    #[test]
    fn replies_encode_as_redis_would() {
        assert_eq!(encode(&RedisValue::Int(3)), b":3\r\n");
        assert_eq!(encode(&RedisValue::Nil), b"$-1\r\n");
        let arr = RedisValue::Array(vec![RedisScalar::Bulk(b"a".to_vec()), RedisScalar::Int(1)]);
        assert_eq!(encode(&arr), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(error("denied:\r\n EVAL"), b"-ERR denied: EVAL\r\n");
    }
}
