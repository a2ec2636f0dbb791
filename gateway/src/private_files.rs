//! Wharf's files are its own: the config store (API key hashes, sealed keys), tenants' SQLite
//! data, compiled plugins and the upgrade socket hold other tenants' secrets, so no other local
//! user may read them, whatever umask the service manager or a shell left.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{umask, Mode};
use nix::unistd::geteuid;

/// Every file and directory this process creates from now on is the owner's only (0600/0700),
/// including those SQLite, the plugin cache and the upgrade socket create themselves.
pub fn owner_only_from_now_on() {
    umask(Mode::from_bits_truncate(0o077));
}

/// Creates `dir` (0700) if missing, and takes group and other access away from it and from
/// everything under it: a data dir left by an older version, or copied in, is made private too.
pub fn make_private(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    restrict(dir)
}

fn restrict(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    // A symlink's own mode means nothing, and its target may not be ours to change.
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    // Not ours to change (a volume's root owned by root with an fsGroup, say): its owner
    // decides who may list it; what wharf creates inside is private all the same.
    if meta.uid() != geteuid().as_raw() {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "owned by another user and readable by others; wharf's own files inside stay private");
        }
        if !meta.is_dir() {
            return Ok(());
        }
    } else {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(path, Permissions::from_mode(mode & 0o7700))?;
        }
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            restrict(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_tree_is_made_private() {
        let root = std::env::temp_dir().join(format!("wharf-private-{}", std::process::id()));
        let sub = root.join("tenant-sql");
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join("t.db"), b"x").unwrap();
        for (p, m) in [(&root, 0o755), (&sub, 0o775), (&sub.join("t.db"), 0o644)] {
            fs::set_permissions(p, Permissions::from_mode(m)).unwrap();
        }
        make_private(&root).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&sub.join("t.db")), 0o600);
        fs::remove_dir_all(&root).unwrap();
    }
}
