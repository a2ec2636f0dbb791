//! The proxy-wasm ABI's values and wire formats (ABI 0.2.1, proxy-wasm/spec), independent of how
//! the host keeps its VMs: status codes, the enums the host functions take, and the encoding of
//! header maps and property paths as they cross guest memory. Decoding is bounded: a hostile
//! module's sizes and counts are checked against the bytes actually given before anything is
//! allocated.

/// `proxy_status_t`: what every host function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

/// `proxy_map_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    GrpcInitialMetadata,
    GrpcTrailingMetadata,
    HttpCallResponseHeaders,
    HttpCallResponseTrailers,
}

impl MapType {
    pub fn from_i32(v: i32) -> Option<MapType> {
        use MapType::*;
        Some(match v {
            0 => RequestHeaders,
            1 => RequestTrailers,
            2 => ResponseHeaders,
            3 => ResponseTrailers,
            4 => GrpcInitialMetadata,
            5 => GrpcTrailingMetadata,
            6 => HttpCallResponseHeaders,
            7 => HttpCallResponseTrailers,
            _ => return None,
        })
    }
}

/// `proxy_buffer_type_t` (9: Higress's Redis call response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    RequestBody,
    ResponseBody,
    DownstreamData,
    UpstreamData,
    HttpCallResponseBody,
    GrpcCallMessage,
    VmConfiguration,
    PluginConfiguration,
    ForeignFunctionArguments,
    RedisCallResponse,
}

impl BufferType {
    pub fn from_i32(v: i32) -> Option<BufferType> {
        use BufferType::*;
        Some(match v {
            0 => RequestBody,
            1 => ResponseBody,
            2 => DownstreamData,
            3 => UpstreamData,
            4 => HttpCallResponseBody,
            5 => GrpcCallMessage,
            6 => VmConfiguration,
            7 => PluginConfiguration,
            8 => ForeignFunctionArguments,
            9 => RedisCallResponse,
            _ => return None,
        })
    }
}

/// `proxy_action_t`, what a stream callback answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

impl Action {
    /// Anything but `PAUSE` (1) continues, as Envoy reads it.
    pub fn from_i32(v: i32) -> Action {
        if v == 1 {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

/// `proxy_log_level_t`, as a tracing level (CRITICAL is logged as an error).
pub fn log_level(v: i32) -> Option<tracing::Level> {
    Some(match v {
        0 => tracing::Level::TRACE,
        1 => tracing::Level::DEBUG,
        2 => tracing::Level::INFO,
        3 => tracing::Level::WARN,
        4 | 5 => tracing::Level::ERROR,
        _ => return None,
    })
}

/// Why bytes from a module are not a header map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("the header map is truncated")]
    Truncated,
    #[error("the header map has {0} pairs, over the {MAX_PAIRS} allowed")]
    TooMany(u64),
}

/// Pairs one map may carry across the ABI: what a server would accept in a header block.
pub const MAX_PAIRS: u64 = 1024;

/// The serialized form: pair count, each pair's key and value lengths (u32, little-endian), then
/// each key and value followed by a NUL.
pub fn encode_map<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let n = pairs.clone().into_iter().count();
    let data: usize = pairs
        .clone()
        .into_iter()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum();
    let mut out = Vec::with_capacity(4 + 8 * n + data);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// A header map's pairs, names and values as bytes.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Decodes a map a module wrote, every length checked against `bytes` first.
pub fn decode_map(bytes: &[u8]) -> Result<Pairs, MapError> {
    let u32_at = |i: usize| -> Result<usize, MapError> {
        let b = bytes.get(i..i + 4).ok_or(MapError::Truncated)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = u32_at(0)? as u64;
    if n > MAX_PAIRS {
        return Err(MapError::TooMany(n));
    }
    let n = n as usize;
    let mut lens = Vec::with_capacity(n);
    for i in 0..n {
        lens.push((u32_at(4 + 8 * i)?, u32_at(8 + 8 * i)?));
    }
    let mut at = 4 + 8 * n;
    let mut take = |len: usize| -> Result<Vec<u8>, MapError> {
        let end = at.checked_add(len).ok_or(MapError::Truncated)?;
        let s = bytes.get(at..end).ok_or(MapError::Truncated)?.to_vec();
        // Each key and value ends with a NUL.
        at = end + 1;
        Ok(s)
    };
    let mut pairs = Vec::with_capacity(n);
    for (k, v) in lens {
        let key = take(k)?;
        let value = take(v)?;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// A property path as a module sends it: segments separated by NUL (`request\0path`), as the
/// dotted name the host looks up (`request.path`).
pub fn property_path(bytes: &[u8]) -> String {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_round_trip_and_bad_ones_are_refused() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b":path", b"/x"), (b"x-a", b""), (b"k", b"v\xff")];
        let bytes = encode_map(pairs.iter().copied());
        let back = decode_map(&bytes).unwrap();
        let back: Vec<(&[u8], &[u8])> = back.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(back, pairs);

        assert_eq!(
            decode_map(&bytes[..bytes.len() - 3]),
            Err(MapError::Truncated)
        );
        assert_eq!(decode_map(&[1, 0]), Err(MapError::Truncated));
        // A count of 100,000 pairs in 4 bytes: refused before anything is allocated for them.
        assert_eq!(
            decode_map(&100_000u32.to_le_bytes()),
            Err(MapError::TooMany(100_000))
        );
        // Lengths pointing far past the bytes given.
        let mut lying = encode_map([(&b"k"[..], &b"v"[..])]);
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_map(&lying), Err(MapError::Truncated));
    }

    #[test]
    fn property_paths_join_their_segments() {
        assert_eq!(property_path(b"request\0path"), "request.path");
        assert_eq!(property_path(b"plugin_root_id\0"), "plugin_root_id");
        assert_eq!(Action::from_i32(1), Action::Pause);
        assert_eq!(Action::from_i32(7), Action::Continue);
        assert_eq!(BufferType::from_i32(9), Some(BufferType::RedisCallResponse));
        assert_eq!(MapType::from_i32(8), None);
    }
}
