//! Compiled code on disk, per compiler: one directory per engine configuration (compiled code
//! is only valid for the engine that made it; Cranelift's and Winch's engines hash differently,
//! and Winch's directory is also named so), a file per content hash with its digest and
//! footprint beside it. Only files written here (and whose digest still matches) are ever
//! deserialized.
// The workspace denies unsafe code; this module needs it: compiled code is deserialized from files this cache wrote and checked.
#![allow(unsafe_code)]

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use super::{sha256_hex, Code, Tier};
use crate::footprint::Footprint;

/// One compiler's directory of compiled code (`None`: memory only).
pub(super) struct DiskDir(Option<PathBuf>);

impl DiskDir {
    pub(super) fn new(cache_dir: Option<&Path>, engine: &Engine, tier: Tier) -> DiskDir {
        DiskDir(cache_dir.map(|d| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            // The optimized directory keeps its name from before there were two compilers: a
            // node upgraded in place still finds what it compiled.
            match tier {
                Tier::Optimized => d.join(format!("{:016x}", h.finish())),
                Tier::Baseline => d.join(format!("winch-{:016x}", h.finish())),
            }
        }))
    }

    /// The directory, when code is kept on disk.
    pub(super) fn dir(&self) -> Option<&Path> {
        self.0.as_deref()
    }

    fn paths(&self, sha: &str) -> Option<(PathBuf, PathBuf)> {
        // `sha` is our own hex digest, but never let it name a path outside the cache.
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let dir = self.0.as_ref()?;
        Some((
            dir.join(format!("{sha}.cwasm")),
            dir.join(format!("{sha}.cwasm.sha256")),
        ))
    }

    /// Beside an artifact: its component's footprint, which the compiled code does not tell.
    fn footprint_path(digest: &Path) -> PathBuf {
        digest.with_extension("footprint")
    }

    /// Whether an artifact for `sha` is here with its footprint (not checked until loaded): one
    /// written before footprints were kept is compiled again from its bytes.
    pub(super) fn holds(&self, sha: &str) -> bool {
        self.paths(sha).is_some_and(|(artifact, digest)| {
            artifact.is_file() && Self::footprint_path(&digest).is_file()
        })
    }

    pub(super) fn store(&self, sha: &str, code: &Code, footprint: Footprint) {
        let Some((artifact, digest)) = self.paths(sha) else {
            return;
        };
        let write = || -> std::io::Result<()> {
            let bytes = match code {
                Code::Component(c) => c.serialize(),
                Code::Module(m) => m.serialize(),
            }
            .map_err(std::io::Error::other)?;
            std::fs::create_dir_all(artifact.parent().unwrap_or(Path::new(".")))?;
            let tmp = artifact.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::write(&digest, sha256_hex(&bytes))?;
            let Footprint {
                core_instances,
                memories,
                tables,
            } = footprint;
            std::fs::write(
                Self::footprint_path(&digest),
                format!("{core_instances} {memories} {tables}"),
            )?;
            std::fs::rename(&tmp, &artifact)
        };
        if let Err(e) = write() {
            tracing::warn!("cannot write compiled component {sha} to disk cache: {e}");
        }
    }

    /// An artifact and its footprint; one written before footprints were kept is compiled again.
    pub(super) fn load(&self, engine: &Engine, sha: &str) -> Option<(Code, Footprint)> {
        let (artifact, digest) = self.paths(sha)?;
        let counts: Vec<u32> = std::fs::read_to_string(Self::footprint_path(&digest))
            .ok()?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [core_instances, memories, tables] = counts[..] else {
            return None;
        };
        let footprint = Footprint {
            core_instances,
            memories,
            tables,
        };
        let bytes = std::fs::read(&artifact).ok()?;
        let expected = std::fs::read_to_string(&digest).ok()?;
        if sha256_hex(&bytes) != expected.trim() {
            tracing::warn!("disk cache entry {sha} does not match its digest; recompiling");
            return None;
        }
        // The file was produced by `Component::serialize` (or `Module::serialize`, as its
        // footprint says) of an engine with the same compatibility hash (it is in the directory
        // name) and its digest matches what we wrote.
        let code = if footprint == Footprint::MODULE {
            // SAFETY: as above, a module artifact this cache wrote.
            unsafe { Module::deserialize(engine, &bytes) }.map(Code::Module)
        } else {
            // SAFETY: as above, a component artifact this cache wrote.
            unsafe { Component::deserialize(engine, &bytes) }.map(Code::Component)
        };
        match code {
            Ok(c) => Some((c, footprint)),
            Err(e) => {
                tracing::warn!("disk cache entry {sha} unusable ({e}); recompiling");
                None
            }
        }
    }
}
