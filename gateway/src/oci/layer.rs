//! The plugin inside a pulled image: a Wasm OCI artifact's layer is the module itself; Istio's
//! image format is a filesystem layer (tar, usually gzipped) holding `plugin.wasm`. The layer
//! is already capped at the plugin size limit; what it decompresses to is capped too (a gzip
//! bomb stops at the cap), and the file is read only after its header's size passed the limit.

use std::io::Read;

use super::OciError;

/// Layer media types that are the module itself (the CNCF Wasm artifact, solo.io's variant).
pub const WASM_LAYERS: &[&str] = &[
    "application/wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
];

/// Whether a layer of this media type is a filesystem tarball (OCI or Docker).
pub fn is_tar_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.v1.tar")
        || media_type.starts_with("application/vnd.docker.image.rootfs.diff.tar")
}

/// The file Istio's image format carries the module in.
const PLUGIN_FILE: &str = "plugin.wasm";

/// How much a layer may decompress to, past the plugin limit: room for the other small files
/// an image may carry, not for a bomb.
const SLACK: u64 = 1 << 20;

/// `plugin.wasm` out of a tar layer (gzip detected by its magic bytes), at most `limit` bytes.
pub fn wasm_from_tar(blob: &[u8], limit: u64) -> Result<Vec<u8>, OciError> {
    let cap = limit.saturating_mul(2).saturating_add(SLACK);
    let reader: Box<dyn Read + '_> = if blob.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(blob))
    } else {
        Box::new(blob)
    };
    let mut tar = Tar {
        inner: reader.take(cap),
        cap,
    };
    let mut long_name: Option<String> = None;
    loop {
        let mut header = [0u8; 512];
        if !tar.read_exact(&mut header)? || header.iter().all(|b| *b == 0) {
            return Err(OciError::NoWasm(format!(
                "the image's layer has no {PLUGIN_FILE}"
            )));
        }
        let size = entry_size(&header)?;
        let padded = size.div_ceil(512) * 512;
        match header[156] {
            // PAX extended header and GNU long name: the next entry's real name.
            b'x' | b'L' if size <= 64 << 10 => {
                let mut data = vec![0u8; padded as usize];
                if !tar.read_exact(&mut data)? {
                    return Err(truncated());
                }
                data.truncate(size as usize);
                long_name = if header[156] == b'L' {
                    Some(cstr(&data))
                } else {
                    pax_path(&data)
                };
                continue;
            }
            b'0' | 0 => {
                let name = long_name.take().unwrap_or_else(|| header_name(&header));
                if name.rsplit('/').next() == Some(PLUGIN_FILE) {
                    if size > limit {
                        return Err(OciError::TooLarge {
                            what: "the layer's plugin.wasm",
                            size: Some(size),
                            limit,
                        });
                    }
                    let mut wasm = vec![0u8; size as usize];
                    if !tar.read_exact(&mut wasm)? {
                        return Err(truncated());
                    }
                    return Ok(wasm);
                }
            }
            _ => {}
        }
        long_name = None;
        tar.skip(padded)?;
    }
}

struct Tar<R> {
    inner: std::io::Take<R>,
    cap: u64,
}

impl<R: Read> Tar<R> {
    /// Fills `buf`; `false` at the end of the stream. Hitting the cap is "too large".
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<bool, OciError> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.inner.read(&mut buf[filled..]).map_err(|e| {
                OciError::NoWasm(format!("the image's layer is not a readable tar: {e}"))
            })?;
            if n == 0 {
                if self.inner.limit() == 0 {
                    return Err(OciError::TooLarge {
                        what: "the image's layer uncompressed",
                        size: None,
                        limit: self.cap,
                    });
                }
                return Ok(false);
            }
            filled += n;
        }
        Ok(true)
    }

    fn skip(&mut self, mut n: u64) -> Result<(), OciError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let chunk = n.min(buf.len() as u64) as usize;
            if !self.read_exact(&mut buf[..chunk])? {
                return Err(truncated());
            }
            n -= chunk as u64;
        }
        Ok(())
    }
}

fn truncated() -> OciError {
    OciError::NoWasm("the image's layer ends inside an entry".into())
}

/// The entry's size: octal text, or base-256 (GNU) when the first byte's high bit is set.
fn entry_size(h: &[u8; 512]) -> Result<u64, OciError> {
    let field = &h[124..136];
    if field[0] & 0x80 != 0 {
        let mut n: u64 = 0;
        for b in &field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(u64::from(*b)))
                .ok_or_else(|| OciError::NoWasm("a tar entry's size overflows".into()))?;
        }
        return Ok(n);
    }
    let text = cstr(field);
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8)
        .map_err(|_| OciError::NoWasm("the image's layer is not a tar".into()))
}

fn header_name(h: &[u8; 512]) -> String {
    let name = cstr(&h[..100]);
    if &h[257..262] == b"ustar" {
        let prefix = cstr(&h[345..500]);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// `path` from PAX records (`<len> path=<value>\n`).
fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .filter_map(|l| l.split_once(' ')?.1.strip_prefix("path="))
        .next_back()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn entry(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{:011o}\0", data.len());
        h[124..136].copy_from_slice(size.as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(512 + data.len().div_ceil(512) * 512, 0);
        out
    }

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn plugin_wasm_is_found_in_plain_and_gzipped_layers() {
        let mut tar = entry("README", b"hello");
        tar.extend(entry("./plugin.wasm", b"\0asm\x01\0\0\0"));
        tar.extend([0u8; 1024]);
        assert_eq!(wasm_from_tar(&tar, 100).unwrap(), b"\0asm\x01\0\0\0");
        assert_eq!(wasm_from_tar(&gzip(&tar), 100).unwrap(), b"\0asm\x01\0\0\0");
        assert!(matches!(
            wasm_from_tar(&tar, 4),
            Err(OciError::TooLarge { .. })
        ));
        let none = [entry("other", b"x"), vec![0u8; 1024]].concat();
        assert!(matches!(
            wasm_from_tar(&none, 100),
            Err(OciError::NoWasm(_))
        ));
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        // 64 MiB of zeros in one entry compresses to ~64 KiB.
        let mut tar = entry("filler", &vec![0u8; 64 << 20]);
        tar.extend(entry("plugin.wasm", b"x"));
        let bomb = gzip(&tar);
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(
            wasm_from_tar(&bomb, 1000),
            Err(OciError::TooLarge { .. })
        ));
    }
}
