//! Writing output files all-or-nothing.
//!
//! Every file moesim writes goes to a temporary sibling first and is renamed into place only when
//! complete, so a failure never leaves a half-written output behind. A folder of outputs that
//! belong together (a report) is replaced whole the same way ([`replace_dir`]).

use std::ffi::OsStr;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `path` atomically: `write` fills a buffered temporary file next to `path`, which is
/// renamed over `path` only if `write` succeeds. On failure the temporary file is removed.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut BufWriter<fs::File>) -> Result<()>,
{
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut writer = BufWriter::new(file);
        write(&mut writer)?;
        writer.flush().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// Writes a polars table to `path` as Parquet, atomically.
pub fn write_parquet_frame(path: &Path, frame: &mut polars::prelude::DataFrame) -> Result<()> {
    write_atomic(path, |w| {
        polars::prelude::ParquetWriter::new(w)
            .finish(frame)
            .map(|_| ())
            .map_err(|e| Error::bad_file(path, e.to_string()))
    })
}

/// Replaces the folder `dir` whole with what `write` writes into the fresh folder it is given,
/// so that `dir` holds everything it held before or everything `write` wrote, never a mix,
/// even when the process is killed. `write` fills `<dir>.<pid>.tmp` beside `dir`; then `dir`
/// is renamed to `<dir>.<pid>.old`, the new folder to `dir`, and the old one is removed. Only
/// a kill in the instant between those two renames leaves `dir` missing (the old folder whole
/// in `<dir>.<pid>.old`). Such leftovers of killed runs beside `dir`, of any pid, are removed
/// first; if `write` or the swap fails, the new folder is removed and `dir` left as it was.
pub fn replace_dir<T>(dir: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let name = dir
        .file_name()
        .ok_or_else(|| Error::invalid(format!("`{}` names no folder", dir.display())))?;
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    let parent = parent.unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    remove_leftovers(parent, name)?;
    let new = temp_sibling(dir);
    fs::create_dir(&new).map_err(|e| Error::io(&new, e))?;
    let result = write(&new).and_then(|value| swap(dir, &new).map(|()| value));
    if result.is_err() {
        let _ = fs::remove_dir_all(&new);
    }
    result
}

/// Puts the folder `new` in `dir`'s place (see [`replace_dir`]); `dir` may not exist.
fn swap(dir: &Path, new: &Path) -> Result<()> {
    let old = sibling(dir, "old");
    let had_old = match fs::rename(dir, &old) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(dir, e)),
    };
    if let Err(e) = fs::rename(new, dir) {
        if had_old {
            let _ = fs::rename(&old, dir);
        }
        return Err(Error::io(dir, e));
    }
    if had_old {
        fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Removes what killed runs of [`replace_dir`] left in `parent` beside its entry `name`:
/// `<name>.<pid>.tmp` and `<name>.<pid>.old`, folders or files.
fn remove_leftovers(parent: &Path, name: &OsStr) -> Result<()> {
    let entries = fs::read_dir(parent).map_err(|e| Error::io(parent, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(parent, e))?;
        if !is_leftover(&entry.file_name(), name) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Whether `entry` is `<name>.<pid>.tmp` or `<name>.<pid>.old`.
fn is_leftover(entry: &OsStr, name: &OsStr) -> bool {
    let (Some(entry), Some(name)) = (entry.to_str(), name.to_str()) else {
        return false;
    };
    let pid = entry
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".tmp").or(rest.strip_suffix(".old")));
    pid.is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// The temporary name used while `path` is being written: same folder, so rename is atomic.
pub fn temp_sibling(path: &Path) -> PathBuf {
    sibling(path, "tmp")
}

/// `<path>.<pid>.<suffix>`, in `path`'s folder.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{}.{suffix}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        let err = write_atomic(&path, |w| {
            w.write_all(b"partial").unwrap();
            Err(Error::invalid("boom"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn successful_write_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.txt");
        write_bytes_atomic(&path, b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_folder_is_replaced_whole_or_created_and_nothing_is_left_beside_it() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("reports/out");
        let write = |files: &'static [&'static str]| {
            move |tmp: &Path| {
                for file in files {
                    write_bytes_atomic(&tmp.join(file), file.as_bytes())?;
                }
                Ok(files.len())
            }
        };
        assert_eq!(replace_dir(&out, write(&["a", "b"])).unwrap(), 2);
        assert_eq!(names(&out), ["a", "b"]);
        // `b` is not written again: it goes with the old folder.
        assert_eq!(replace_dir(&out, write(&["a", "c"])).unwrap(), 2);
        assert_eq!(names(&out), ["a", "c"]);
        assert_eq!(names(&root.path().join("reports")), ["out"]);
        assert!(replace_dir(Path::new(".."), write(&["a"])).is_err());
    }

    #[test]
    fn a_failed_write_leaves_the_old_folder_as_it_was() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        write_bytes_atomic(&out.join("a"), b"old").unwrap();
        let failed = replace_dir(&out, |tmp| {
            write_bytes_atomic(&tmp.join("a"), b"new")?;
            Err::<(), _>(Error::invalid("boom"))
        });
        assert!(failed.is_err());
        assert_eq!(names(root.path()), ["out"]);
        assert_eq!(fs::read(out.join("a")).unwrap(), b"old");
    }

    #[test]
    fn what_killed_runs_left_beside_the_folder_is_removed_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        for leftover in ["out.123.tmp/a", "out.45.old/b"] {
            write_bytes_atomic(&root.path().join(leftover), b"x").unwrap();
        }
        for kept in [
            "out.txt",
            "out.x.tmp",
            "out..old",
            "other.1.tmp",
            "out.1.tmp.keep",
        ] {
            write_bytes_atomic(&root.path().join(kept), b"x").unwrap();
        }
        replace_dir(&root.path().join("out"), |_| Ok(())).unwrap();
        assert_eq!(
            names(root.path()),
            [
                "other.1.tmp",
                "out",
                "out..old",
                "out.1.tmp.keep",
                "out.txt",
                "out.x.tmp"
            ]
        );
    }
}
