//! The disk cache's upkeep: compiled code is written once per content hash and engine and read
//! back on every start, so without upkeep a node's disk would keep the code of every plugin
//! version ever uploaded to the fleet, and of every engine it ever ran. The control plane calls
//! [`ComponentCache::sweep_disk`] now and then with the hashes the store still has.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::ComponentCache;

/// What a sweep removed, and what the disk cache holds after it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub files: u64,
    pub bytes: u64,
    pub kept_bytes: u64,
}

impl ComponentCache {
    /// Removes, once older than `grace`: the code of content no plugin version has (`live`: the
    /// store's content hashes) and nothing compiles or uses (an upload compiles before its
    /// version is committed; the grace covers the moment between), baseline
    /// code whose optimized code is beside it (new VMs never load it), files a crashed write
    /// left, and the directories of engines this node does not run (an upgrade of wasmtime or
    /// of the engine's settings). Only names this cache writes are touched.
    pub fn sweep_disk(&self, live: &HashSet<String>, grace: Duration) -> Swept {
        let mut swept = Swept::default();
        // Compiling now, or in use (a request runs it, an upload holds it until its version is
        // committed): what a cache entry alone keeps does not count.
        let held: HashSet<String> = self
            .entries
            .lock()
            .iter()
            .filter(|(_, slot)| match slot.get() {
                None => true,
                Some(Ok(p)) => std::sync::Arc::strong_count(p) > 1,
                Some(Err(_)) => false,
            })
            .map(|(sha, _)| sha.clone())
            .collect();
        let needed = |sha: &str| live.contains(sha) || held.contains(sha);
        let optimized = self.optimized.disk.dir();
        let baseline = self.baseline.as_ref().and_then(|t| t.disk.dir());
        let Some(root) = optimized.and_then(Path::parent) else {
            return swept;
        };
        let Ok(entries) = std::fs::read_dir(root) else {
            return swept;
        };
        let old = |path: &Path| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age >= grace)
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !engine_dir_name(&name) || !path.is_dir() {
                continue;
            }
            if Some(path.as_path()) == optimized {
                sweep_dir(&path, &mut swept, |sha, _| needed(sha), &old);
            } else if Some(path.as_path()) == baseline {
                let has_optimized =
                    |sha: &str| optimized.is_some_and(|o| o.join(format!("{sha}.cwasm")).is_file());
                let keep = |sha: &str, _: &str| needed(sha) && !has_optimized(sha);
                sweep_dir(&path, &mut swept, keep, &old);
            } else if old(&path) {
                let bytes = dir_bytes(&path);
                if std::fs::remove_dir_all(&path).is_ok() {
                    swept.files += 1;
                    swept.bytes += bytes;
                }
            }
        }
        swept.kept_bytes = [optimized, baseline]
            .into_iter()
            .flatten()
            .map(dir_bytes)
            .sum();
        swept
    }
}

/// The names [`super::disk::DiskDir`] gives engine directories: 16 hex digits, or `winch-` and
/// 16 hex digits.
fn engine_dir_name(name: &str) -> bool {
    let hex = name.strip_prefix("winch-").unwrap_or(name);
    hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes the old files of one engine directory that `keep(sha, suffix)` does not keep; a
/// leftover temporary file (`<sha>.tmp<pid>`) is never kept.
fn sweep_dir(
    dir: &Path,
    swept: &mut Swept,
    keep: impl Fn(&str, &str) -> bool,
    old: &impl Fn(&Path) -> bool,
) {
    let Ok(files) = std::fs::read_dir(dir) else {
        return;
    };
    for file in files.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let Some((sha, suffix)) = name.split_at_checked(64) else {
            continue;
        };
        let ours = sha.bytes().all(|b| b.is_ascii_hexdigit())
            && (matches!(suffix, ".cwasm" | ".cwasm.sha256" | ".cwasm.footprint")
                || suffix.starts_with(".tmp"));
        let path = file.path();
        if !ours || (!suffix.starts_with(".tmp") && keep(sha, suffix)) || !old(&path) {
            continue;
        }
        let bytes = file.metadata().map_or(0, |m| m.len());
        if std::fs::remove_file(&path).is_ok() {
            swept.files += 1;
            swept.bytes += bytes;
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |files| {
        files
            .flatten()
            .map(|f| match f.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&f.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}
