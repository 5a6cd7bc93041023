//! The on-disk cache of feature visualisations. The images do not depend on any input, so
//! the viewer's "feature vis" method, `export --methods featvis` and `convlens featvis` keep
//! each filter's image once it is computed, keyed by the model's fingerprint, the layer and
//! every setting that changes the result ([`FeatvisSpec::result_key`]): the second time is
//! instant. [`featvis_cached`] serves a layer's filters from it and computes the rest.
//!
//! Layout: `ROOT/featvis/<model fingerprint>/<FNV-1a of the settings>/` holding
//! `settings.txt` (the settings in words), and per filter `<layer stem>_<n>.npy` (the image,
//! `[3, H, W]` float32 in [0, 1], n from 1) and `<layer stem>_<n>.json` (its objective
//! trace). Files are written atomically; an unreadable, mis-shaped or non-finite entry is
//! recomputed and rewritten.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::{FeatvisEvent, FeatvisImage, FeatvisSpec, Result, featvis_stream};
use crate::engine::Engine;

/// One model's feature visualisations under one set of settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatvisCache {
    dir: PathBuf,
    /// `[H, W]` of every image.
    input_hw: [usize; 2],
    /// The settings in words ([`FeatvisSpec::result_key`]), written beside the entries.
    settings: String,
}

/// Where caches live: `$CONVLENS_CACHE_DIR`, else `$XDG_CACHE_HOME/convlens`, else
/// `~/.cache/convlens`; `None` when none of them is set.
pub fn default_root() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("CONVLENS_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("convlens")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/convlens")))
}

impl FeatvisCache {
    /// The cache of the model with `fingerprint` under `spec`, for images of `input_hw`.
    pub fn new(root: &Path, fingerprint: &str, spec: &FeatvisSpec, input_hw: [usize; 2]) -> Self {
        let key = spec.result_key(input_hw);
        let hashed = crate::model::onnx::fingerprint(key.as_bytes());
        Self {
            dir: root.join("featvis").join(fingerprint).join(hashed),
            input_hw,
            settings: key,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, stem: &str, filter: usize, ext: &str) -> PathBuf {
        self.dir.join(format!("{stem}_{}.{ext}", filter + 1))
    }

    /// Filter `filter` (from 0) of the layer with file stem `stem`, if a valid entry exists.
    pub fn load(&self, stem: &str, filter: usize) -> Option<FeatvisImage> {
        let array = crate::npy::read(&self.path(stem, filter, "npy")).ok()?;
        let [h, w] = self.input_hw;
        if array.shape != [3, h, w] || !array.data.iter().all(|v| v.is_finite()) {
            return None;
        }
        let trace = std::fs::read(self.path(stem, filter, "json")).ok()?;
        let trace: Vec<(usize, f32)> = serde_json::from_slice(&trace).ok()?;
        Some(FeatvisImage {
            filter,
            image: array.data,
            objective: trace,
        })
    }

    /// Stores `image` of the layer with file stem `stem` (the trace first: an image without
    /// its trace does not count as cached).
    pub fn store(&self, stem: &str, image: &FeatvisImage) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let settings = self.dir.join("settings.txt");
        if !settings.exists() {
            let text = format!("{}\n", self.settings);
            crate::atomic_file::write_atomic(&settings, text.as_bytes(), false)?;
        }
        let trace = serde_json::to_vec(&image.objective).map_err(std::io::Error::other)?;
        crate::atomic_file::write_atomic(&self.path(stem, image.filter, "json"), &trace, false)?;
        let [h, w] = self.input_hw;
        let npy = crate::npy::to_bytes(&[3, h, w], &image.image);
        crate::atomic_file::write_atomic(&self.path(stem, image.filter, "npy"), &npy, false)
    }
}

/// What [`featvis_cached`] reports.
#[derive(Debug, Clone, Copy)]
pub enum CachedEvent<'a> {
    /// [`FeatvisEvent::Step`] of the filters being optimised (none for cached ones), or
    /// [`FeatvisEvent::Chunk`] with the next run of consecutive filters, cached or
    /// computed, in order.
    Featvis(FeatvisEvent<'a>),
    /// The cache could not be written (the images are delivered anyway).
    CacheFailed(&'a std::io::Error),
}

/// [`featvis_stream`] for `filters` (in order) of the layer `layer` with file stem `stem`,
/// served from `cache` where it has them: the missing filters are optimised (in chunks of
/// [`FeatvisSpec::batch`], stored as each finishes) and the filters are delivered in runs of
/// `batch` consecutive ones, each as soon as all its images are there. Without a cache,
/// everything is computed.
pub fn featvis_cached(
    engine: &Engine,
    cache: Option<&FeatvisCache>,
    (layer, stem): (usize, &str),
    filters: &[usize],
    spec: &FeatvisSpec,
    on_event: &mut dyn FnMut(CachedEvent<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let mut ready: HashMap<usize, FeatvisImage> = HashMap::new();
    for &f in filters {
        if let Some(image) = cache.and_then(|c| c.load(stem, f)) {
            ready.insert(f, image);
        }
    }
    let missing: Vec<usize> = (filters.iter().copied())
        .filter(|f| !ready.contains_key(f))
        .collect();
    let mut runs = filters.chunks(spec.batch.max(1)).peekable();
    // Delivers the runs from the front whose images are all there.
    let mut deliver =
        |ready: &mut HashMap<usize, FeatvisImage>,
         on_event: &mut dyn FnMut(CachedEvent<'_>) -> ControlFlow<()>| {
            while let Some(run) = runs.next_if(|run| run.iter().all(|f| ready.contains_key(f))) {
                let images: Vec<FeatvisImage> =
                    run.iter().filter_map(|f| ready.remove(f)).collect();
                if on_event(CachedEvent::Featvis(FeatvisEvent::Chunk(&images))).is_break() {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        };
    if deliver(&mut ready, on_event).is_break() {
        return Ok(ControlFlow::Break(()));
    }
    if missing.is_empty() {
        return Ok(ControlFlow::Continue(())); // every run was delivered above
    }
    featvis_stream(engine, layer, &missing, spec, &mut |event| match event {
        step @ FeatvisEvent::Step { .. } => on_event(CachedEvent::Featvis(step)),
        FeatvisEvent::Chunk(done) => {
            for image in done {
                if let Some(cache) = cache
                    && let Err(e) = cache.store(stem, image)
                    && on_event(CachedEvent::CacheFailed(&e)).is_break()
                {
                    return ControlFlow::Break(());
                }
                ready.insert(image.filter, image.clone());
            }
            deliver(&mut ready, on_event)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(filter: usize, v: f32) -> FeatvisImage {
        FeatvisImage {
            filter,
            image: vec![v; 3 * 2 * 3],
            objective: vec![(0, 0.5), (4, 1.25)],
        }
    }

    #[test]
    fn entries_round_trip_and_bad_ones_do_not_count() {
        let root = tempfile::tempdir().unwrap();
        let spec = FeatvisSpec::lucid([0.5; 3], [0.25; 3]);
        let cache = FeatvisCache::new(root.path(), "0123abcd", &spec, [2, 3]);
        assert_eq!(cache.load("conv1", 0), None);
        cache.store("conv1", &image(4, 0.75)).unwrap();
        assert_eq!(cache.load("conv1", 4), Some(image(4, 0.75)));
        assert!(
            cache.dir().join("conv1_5.npy").is_file(),
            "filters numbered from 1"
        );
        assert!(cache.dir().join("settings.txt").is_file());
        // Another layer, size or setting is another entry.
        assert_eq!(cache.load("conv2", 4), None);
        let other_size = FeatvisCache::new(root.path(), "0123abcd", &spec, [3, 2]);
        assert_eq!(other_size.load("conv1", 4), None);
        let mut fewer_steps = spec;
        fewer_steps.steps = 64;
        let other = FeatvisCache::new(root.path(), "0123abcd", &fewer_steps, [2, 3]);
        assert_ne!(other.dir(), cache.dir());
        // The batch does not change results, so it does not change the key.
        let mut batched = spec;
        batched.batch = 3;
        assert_eq!(
            FeatvisCache::new(root.path(), "0123abcd", &batched, [2, 3]),
            cache
        );
        // A truncated image, a non-finite one, a missing trace: recomputed.
        let npy = cache.dir().join("conv1_5.npy");
        let bytes = std::fs::read(&npy).unwrap();
        std::fs::write(&npy, &bytes[..bytes.len() - 4]).unwrap();
        assert_eq!(cache.load("conv1", 4), None);
        cache.store("conv1", &image(4, f32::NAN)).unwrap();
        assert_eq!(cache.load("conv1", 4), None);
        cache.store("conv1", &image(4, 0.75)).unwrap();
        std::fs::remove_file(cache.dir().join("conv1_5.json")).unwrap();
        assert_eq!(cache.load("conv1", 4), None);
    }
}
