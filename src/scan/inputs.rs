//! The scan's input list: a folder walked recursively in a deterministic order (every
//! file the model loader reads, sorted by path component by component; directory symlinks
//! followed once, so loops end), a text file of paths, or a single image.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{Result, ScanError};

/// At most this many missing files are named in the error.
const MISSING_NAMED: usize = 5;

/// The images `spec` names, in scan order.
pub fn list(spec: &Path) -> Result<Vec<PathBuf>> {
    let io = |error| ScanError::Io {
        path: spec.to_path_buf(),
        error,
    };
    let meta = match std::fs::metadata(spec) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ScanError::NoInputs(format!(
                "{}: no such file or folder (--inputs takes a folder of images, a .txt list \
                 of paths or one image)",
                spec.display()
            )));
        }
        other => other.map_err(io)?,
    };
    if meta.is_dir() {
        let mut files = Vec::new();
        let mut seen = HashSet::new();
        walk(spec, &mut seen, &mut files)?;
        files.sort();
        if files.is_empty() {
            return Err(ScanError::NoInputs(format!(
                "{} holds no images (png, jpg, webp, bmp, tif, gif) or .npy files",
                spec.display()
            )));
        }
        return Ok(files);
    }
    let ext = spec.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext.eq_ignore_ascii_case("txt") || ext.eq_ignore_ascii_case("lst") {
        return read_list(spec);
    }
    Ok(vec![spec.to_path_buf()])
}

/// Adds every input file under `dir`; directories are entered once by canonical path.
fn walk(dir: &Path, seen: &mut HashSet<PathBuf>, files: &mut Vec<PathBuf>) -> Result<()> {
    let io = |error| ScanError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let canonical = std::fs::canonicalize(dir).map_err(io)?;
    if !seen.insert(canonical) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        // Follows symlinks; a dangling one is neither and is passed over.
        if path.is_dir() {
            walk(&path, seen, files)?;
        } else if path.is_file() && crate::model::preprocess::is_input_file(&path) {
            files.push(path);
        }
    }
    Ok(())
}

/// One path per line; blank lines and lines starting with `#` are ignored; relative paths
/// are relative to the list file's folder. Every named file must exist.
fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(list).map_err(|error| ScanError::Io {
        path: list.to_path_buf(),
        error,
    })?;
    let base = list.parent().unwrap_or(Path::new(""));
    let files: Vec<PathBuf> = (text.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| base.join(l))
        .collect();
    if files.is_empty() {
        return Err(ScanError::NoInputs(format!(
            "{} names no files",
            list.display()
        )));
    }
    let missing: Vec<&PathBuf> = files.iter().filter(|p| !p.is_file()).collect();
    if !missing.is_empty() {
        let named: Vec<String> = (missing.iter().take(MISSING_NAMED))
            .map(|p| p.display().to_string())
            .collect();
        return Err(ScanError::NoInputs(format!(
            "{} of the {} files {} names do not exist: {}{}",
            missing.len(),
            files.len(),
            list.display(),
            named.join(", "),
            if missing.len() > MISSING_NAMED {
                ", …"
            } else {
                ""
            }
        )));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_recursively_in_order_and_survives_a_symlink_loop() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        for f in ["z.png", "a.jpg", "b/c/x.npy", "b/y.png", "notes.txt"] {
            std::fs::write(root.join(f), b"").unwrap();
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(root, root.join("b/c/loop")).unwrap();
        let got: Vec<String> = (list(root).unwrap().iter())
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(got, ["a.jpg", "b/c/x.npy", "b/y.png", "z.png"]);
    }

    #[test]
    fn lists_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.png"), b"").unwrap();
        std::fs::write(root.join("list.txt"), "# header\na.png\n\n").unwrap();
        assert_eq!(list(&root.join("list.txt")).unwrap(), [root.join("a.png")]);
        std::fs::write(root.join("bad.txt"), "a.png\nmissing.png\n").unwrap();
        let e = list(&root.join("bad.txt")).unwrap_err().to_string();
        assert!(
            e.contains("1 of the 2 files") && e.contains("missing.png"),
            "{e}"
        );
        let e = list(&root.join("nowhere")).unwrap_err().to_string();
        assert!(e.contains("nowhere: no such file or folder"), "{e}");
        std::fs::create_dir(root.join("empty")).unwrap();
        assert!(
            list(&root.join("empty"))
                .unwrap_err()
                .to_string()
                .contains("no images")
        );
        assert!(list(&root.join("nope")).is_err());
    }
}
