//! Clean-up of temporary files left by writers that died (a kill, a full disk) before renaming
//! them into place: `.NAME.<host>.<pid>.<random>.tmp.EXT` (see `crate::util::temp_beside`).

use std::fs;
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::util::{host_name, process_alive};

/// The writer (host, pid) a temporary file name records, or `None` for any other name.
pub fn temporary_writer(file_name: &str) -> Option<(String, u32)> {
    let (stem, _ext) = file_name.strip_prefix('.')?.rsplit_once(".tmp.")?;
    let mut parts = stem.rsplitn(3, '.');
    let random = parts.next()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    if random.len() != 16 || !random.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // `rest` is `NAME.<host>`; host names may hold dots, so this host's name is matched whole.
    let host = host_name();
    let named = rest.strip_suffix(&host)?.strip_suffix('.')?;
    (!named.is_empty()).then_some((host, pid))
}

/// Removes under `root` every temporary file of a writer on this host whose process is gone;
/// returns the files removed. Temporaries of live writers and of other hosts stay.
pub fn remove_stale_temporaries(root: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for entry in WalkDir::new(root).into_iter().flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy();
        let Some((_, pid)) = temporary_writer(&name) else {
            continue;
        };
        if !process_alive(pid) && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path().to_path_buf());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_temporaries_give_their_writer() {
        let host = host_name();
        let name = format!(".checkpoint.json.{host}.4321.00000000deadbeef.tmp.json");
        assert_eq!(temporary_writer(&name), Some((host.clone(), 4321)));
        let table = format!(".accuracy.tex.{host}.7.0123456789abcdef.tmp.tex");
        assert_eq!(temporary_writer(&table), Some((host.clone(), 7)));
        assert_eq!(temporary_writer("metrics.json"), None);
        assert_eq!(
            temporary_writer(".x.json.otherhost.7.0123456789abcdef.tmp.json"),
            None
        );
        assert_eq!(
            temporary_writer(&format!(".x.{host}.7.short.tmp.json")),
            None
        );
    }
}
