//! Example images per class (`view --examples DIR`), shown beside a hovered class in place
//! of the paper's Flickr photo (which needed the internet). For class `c` with label `L`,
//! the first image (by name) of `DIR/L/`, `DIR/<file-safe L>/` or `DIR/c/`, or the file
//! `DIR/L.*`, `DIR/<file-safe L>.*` or `DIR/c.*`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;

/// Largest side an example is kept at (it is drawn about 270 px wide).
const EXAMPLE_SIDE_PX: u32 = 320;

/// Candidate locations of class `class` labelled `label` under `dir`, in lookup order.
pub fn candidates(dir: &Path, class: usize, label: &str) -> Vec<PathBuf> {
    let mut names = vec![label.to_string()];
    let safe = crate::format::stems::safe_stem(label);
    if !safe.is_empty() && safe != label {
        names.push(safe);
    }
    names.push(class.to_string());
    names
        .into_iter()
        // A label is a name inside `dir`, never a path.
        .filter(|n| !n.is_empty() && !n.contains(['/', '\\']) && n != "." && n != "..")
        .map(|n| dir.join(n))
        .collect()
}

/// The example image file for a class, if the folder has one.
pub fn find(dir: &Path, class: usize, label: &str) -> Option<PathBuf> {
    for base in candidates(dir, class, label) {
        if base.is_dir()
            && let Ok(list) = crate::model::preprocess::list_inputs(&base)
            && let Some(first) = list
                .into_iter()
                .find(|p| !p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")))
        {
            return Some(first);
        }
        for ext in ["jpg", "jpeg", "png", "webp", "bmp"] {
            let f = base.with_extension(ext);
            if f.is_file() {
                return Some(f);
            }
        }
    }
    None
}

/// Loaded examples, by class (`None` = looked for, none found or unreadable).
#[derive(Debug, Default)]
pub struct Examples {
    pub dir: Option<PathBuf>,
    cache: HashMap<usize, Option<RgbImage>>,
}

impl Examples {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            cache: HashMap::new(),
        }
    }

    /// The example of `class`, loading (and shrinking) it the first time.
    pub fn get(&mut self, class: usize, label: &str) -> Option<&RgbImage> {
        let dir = self.dir.as_ref()?;
        self.cache
            .entry(class)
            .or_insert_with(|| {
                let path = find(dir, class, label)?;
                let img = crate::model::preprocess::load_rgb(&path).ok()?;
                let (w, h) = img.dimensions();
                let scale = EXAMPLE_SIDE_PX as f32 / w.max(h).max(1) as f32;
                Some(if scale < 1.0 {
                    image::imageops::thumbnail(
                        &img,
                        ((w as f32 * scale) as u32).max(1),
                        ((h as f32 * scale) as u32).max(1),
                    )
                } else {
                    img
                })
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_found_by_label_safe_label_or_index() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let img = RgbImage::from_pixel(640, 320, image::Rgb([200, 10, 10]));
        std::fs::create_dir_all(root.join("espresso")).unwrap();
        img.save(root.join("espresso/b.png")).unwrap();
        img.save(root.join("espresso/a.png")).unwrap();
        img.save(root.join("7.jpg")).unwrap();
        img.save(root.join("coffee_mug.png")).unwrap();
        assert_eq!(
            find(root, 967, "espresso"),
            Some(root.join("espresso/a.png"))
        );
        assert_eq!(find(root, 7, "cock"), Some(root.join("7.jpg")));
        assert_eq!(
            find(root, 504, "coffee mug"),
            Some(root.join("coffee_mug.png"))
        );
        assert_eq!(find(root, 1, "goldfish"), None);
        // Labels never escape the folder.
        assert!(
            candidates(root, 3, "../secret")
                .iter()
                .all(|p| p.starts_with(root))
        );
        assert!(
            candidates(root, 3, "..")
                .iter()
                .all(|p| p != &root.join(".."))
        );
        let mut ex = Examples::new(Some(root.to_path_buf()));
        let got = ex.get(967, "espresso").unwrap();
        assert_eq!(got.dimensions(), (320, 160), "shrunk to 320 px");
        assert!(ex.get(1, "goldfish").is_none());
        assert!(Examples::new(None).get(967, "espresso").is_none());
    }
}
