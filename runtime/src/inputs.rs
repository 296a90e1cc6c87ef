//! Turns command-line inputs (files, directories, glob patterns) into the list of image files to
//! process. Every input that cannot be used becomes an error naming it, in place, so the rest of
//! the list is still processed and the caller can report each failure.

use crate::error::{FerError, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Whether `path`'s extension (any case) names a format this build decodes: png, jpg/jpeg, bmp,
/// webp, gif, tif/tiff — the `image` features in the workspace's Cargo.toml. Directories are
/// walked, and globs expanded, for these.
pub fn is_image_path(path: &Path) -> bool {
    image::ImageFormat::from_path(path).is_ok_and(|f| f.reading_enabled())
}

/// The formats [`is_image_path`] accepts, by their main extension in alphabetical order, for
/// messages: "bmp, gif, jpg, …".
pub fn image_formats() -> String {
    image::ImageFormat::all()
        .filter(|f| f.reading_enabled())
        .map(|f| f.extensions_str()[0])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(", ")
}

/// Expands `inputs` in order: a file is taken as it is (whatever its extension: a non-image will
/// fail to decode, with its name), a directory is walked recursively for images (sorted; each
/// real directory once per input, so a link back to a parent is not a loop), and a pattern with `*`, `?` or `[` that names no existing file is expanded as a glob (images only).
///
/// ```no_run
/// let items = fer_runtime::collect_inputs(&["photos/", "extra/*.jpg", "one.png"]);
/// for item in &items {
///     match item {
///         Ok(path) => println!("{}", path.display()),
///         Err(e) => eprintln!("skipped: {e}"),
///     }
/// }
/// ```
pub fn collect_inputs<S: AsRef<str>>(inputs: &[S]) -> Vec<Result<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        let input = input.as_ref();
        let path = Path::new(input);
        if path.is_dir() {
            walk(path, &mut out, &mut HashSet::new());
        } else if path.exists() || !input.contains(['*', '?', '[']) {
            // A missing file is reported by the loader (with the OS's reason), like any other.
            out.push(Ok(path.to_path_buf()));
        } else {
            match glob::glob(input) {
                Err(e) => out.push(Err(FerError::Glob {
                    pattern: input.into(),
                    reason: e.to_string(),
                })),
                Ok(paths) => {
                    let before = out.len();
                    let mut matched: Vec<PathBuf> = Vec::new();
                    for entry in paths {
                        match entry {
                            Ok(p) => matched.push(p),
                            Err(e) => {
                                let path = e.path().to_path_buf();
                                out.push(Err(FerError::io(path, e.into())))
                            }
                        }
                    }
                    matched.sort();
                    for p in matched {
                        if p.is_dir() {
                            walk(&p, &mut out, &mut HashSet::new());
                        } else if is_image_path(&p) {
                            out.push(Ok(p));
                        }
                    }
                    if out.len() == before {
                        out.push(Err(FerError::Glob {
                            pattern: input.into(),
                            reason: "matches no image file".into(),
                        }));
                    }
                }
            }
        }
    }
    out
}

/// `seen`: the real paths of the directories this input has walked. A directory reached again
/// through a symbolic link is skipped: a link to a parent would otherwise be walked until the path
/// grew too long, each image listed once per round.
fn walk(dir: &Path, out: &mut Vec<Result<PathBuf>>, seen: &mut HashSet<PathBuf>) {
    match std::fs::canonicalize(dir) {
        Ok(real) => {
            if !seen.insert(real) {
                return;
            }
        }
        Err(e) => return out.push(Err(FerError::io(dir, e))),
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => return out.push(Err(FerError::io(dir, e))),
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => paths.push(e.path()),
            Err(e) => out.push(Err(FerError::io(dir, e))),
        }
    }
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out, seen);
        } else if is_image_path(&p) {
            out.push(Ok(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_expands_globs_and_keeps_missing_files_as_items() {
        let root = std::env::temp_dir().join(format!("fer-inputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sub")).unwrap();
        for f in [
            "b.png",
            "a.JPG",
            "notes.txt",
            "sub/c.bmp",
            "sub/d.webp",
            "sub/e.TIFF",
        ] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let r = root.to_str().unwrap();
        let items = collect_inputs(&[
            r.to_string(),
            format!("{r}/*.png"),
            format!("{r}/*.gif"),
            format!("{r}/missing.png"),
        ]);
        let names: Vec<String> = items
            .iter()
            .map(|i| match i {
                Ok(p) => p.strip_prefix(&root).unwrap().display().to_string(),
                Err(e) => format!("error: {e}"),
            })
            .collect();
        assert_eq!(
            names[..6],
            [
                "a.JPG",
                "b.png",
                "sub/c.bmp",
                "sub/d.webp",
                "sub/e.TIFF",
                "b.png"
            ]
        );
        assert!(
            names[6].starts_with("error: ") && names[6].contains("*.gif"),
            "{names:?}"
        );
        assert_eq!(names[7], "missing.png");
        std::fs::remove_dir_all(&root).unwrap();
        // The list the messages name, and the help and README repeat.
        assert_eq!(image_formats(), "bmp, gif, jpg, png, tiff, webp");
    }

    /// A link back to a parent directory (`sub/up -> ..`) lists each image once, instead of
    /// walking round the loop until the path is too long; a link to a sibling folder of another
    /// input is still walked, and the same folder given twice is listed twice, as asked.
    #[cfg(unix)]
    #[test]
    fn links_back_to_a_parent_are_not_walked_round() {
        let root = std::env::temp_dir().join(format!("fer-inputs-loop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("photos/sub")).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::write(root.join("photos/a.png"), b"x").unwrap();
        std::fs::write(root.join("other/b.png"), b"x").unwrap();
        std::os::unix::fs::symlink("..", root.join("photos/sub/up")).unwrap();
        std::os::unix::fs::symlink("../../other", root.join("photos/sub/other")).unwrap();
        let photos = root.join("photos").display().to_string();
        let items = collect_inputs(&[photos.clone(), photos]);
        let names: Vec<String> = items
            .iter()
            .map(|i| {
                i.as_ref()
                    .unwrap()
                    .strip_prefix(&root)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "photos/a.png",
                "photos/sub/other/b.png",
                "photos/a.png",
                "photos/sub/other/b.png"
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
