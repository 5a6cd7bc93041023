//! Image files → per-image tile summaries of chosen layers, for the streaming consumers
//! (`scan`, `stats`): each step's images are decoded and run through the engine either as
//! one batched pass whose kernels split over the cores (a GPU), or as one single-threaded
//! pass per image on each core at once (the CPU).
//!
//! Why one pass per core on the CPU: EfficientNet-Lite0 over 160 photos of 224², every
//! conv layer summarised as the pass makes it (no decoding), 2-core AMD EPYC (Zen 3; AVX2,
//! no AVX-512), six rounds each of four runs, alternated in one process: one batch-16 pass
//! on both cores 64.7–90.5 img/s, two single-threaded image streams 68.9–113.2 img/s
//! (1.12–1.38× in every round); streams of 2 or 4 images per pass did no better than one,
//! streams of 8 or 16 worse (1.05–1.2×). A kernel split over two cores waits for the slower
//! half at every one of the ~90 nodes and splits small layers badly; a whole pass on one
//! core never waits, and one image's layers stay in the cache.

use std::path::Path;

use super::tile_summary::{TileSummary, summarise_forward};
use crate::engine::Engine;
use crate::model::preprocess::{InputSpec, InputTensor, load_input, load_inputs};

/// One image of a step.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageOutcome {
    /// Per layer (in the order asked for), the image's `C` tile summaries.
    Summarised(Vec<Vec<TileSummary>>),
    /// Not readable, or its pass failed: why.
    Skipped(String),
}

/// How a step's images go through the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassMode {
    /// One pass over the step's images (padded to the engine's batch size), kernels split
    /// over the cores.
    Batched,
    /// One single-threaded pass per image, as many at once as there are cores.
    PerCore,
}

/// An engine set up to summarise steps of images.
pub struct SummaryPasses {
    engine: Engine,
    /// [`PassMode::PerCore`]: one single-thread pool per core (empty when batched).
    pools: Vec<rayon::ThreadPool>,
}

impl SummaryPasses {
    /// One batched pass per step, of [`Engine::batch_size`] images.
    pub fn batched(engine: Engine) -> Self {
        Self {
            engine,
            pools: Vec::new(),
        }
    }

    /// One pass per image, `cores` at once (`engine` takes one image per pass; with a
    /// larger batch it is run batched instead). Err if the threads cannot be started.
    pub fn per_core(engine: Engine, cores: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        if engine.batch_size() != 1 {
            return Ok(Self::batched(engine));
        }
        let pools = (0..cores.max(1))
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("convlens-pass-{i}"))
                    .build()
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { engine, pools })
    }

    pub fn mode(&self) -> PassMode {
        if self.pools.is_empty() {
            PassMode::Batched
        } else {
            PassMode::PerCore
        }
    }

    /// Passes run at once: the cores of [`PassMode::PerCore`], else 1.
    pub fn passes_at_once(&self) -> usize {
        self.pools.len().max(1)
    }

    /// Images in one engine pass: 1 per core, or the batch.
    pub fn images_per_pass(&self) -> usize {
        self.engine.batch_size()
    }

    /// How far ahead of the first outcome not yet consumed the cores may run, for steps of
    /// `step` images: a step, and at least two images per core so none waits for another.
    pub fn look_ahead(&self, step: usize) -> usize {
        step.max(2 * self.passes_at_once())
    }

    /// Decodes `files` (with `spec`) and summarises the outputs of the nodes `layers` for
    /// each: one outcome per file, in order (see [`SummaryPasses::run_ordered`]).
    pub fn run<P: AsRef<Path> + Sync>(
        &self,
        files: &[P],
        spec: &InputSpec,
        layers: &[usize],
    ) -> Vec<ImageOutcome> {
        let mut outcomes = Vec::with_capacity(files.len());
        let collected: Result<(), std::convert::Infallible> =
            self.run_ordered(files, spec, layers, files.len(), &mut |_, o| {
                outcomes.push(o);
                Ok(())
            });
        let Ok(()) = collected;
        outcomes
    }

    /// Decodes `files` (with `spec`), summarises the outputs of the nodes `layers` for each
    /// and hands `consume` each file's index and outcome in file order, on the calling
    /// thread. Batched: a pass of [`Engine::batch_size`] files at a time, then its outcomes.
    /// Per core: the cores never wait for each other; each takes the next file as soon as
    /// it is done, at most `ahead` files past the first one not yet consumed (so at most
    /// `ahead` outcomes wait in memory), while `consume` runs. An `Err` from `consume`
    /// stops the passes (those running finish their image) and is returned.
    pub fn run_ordered<P: AsRef<Path> + Sync, E>(
        &self,
        files: &[P],
        spec: &InputSpec,
        layers: &[usize],
        ahead: usize,
        consume: &mut dyn FnMut(usize, ImageOutcome) -> Result<(), E>,
    ) -> Result<(), E> {
        match self.mode() {
            PassMode::Batched => {
                let batch = self.engine.batch_size().max(1);
                for (c, chunk) in files.chunks(batch).enumerate() {
                    for (k, o) in self
                        .run_batched(chunk, spec, layers)
                        .into_iter()
                        .enumerate()
                    {
                        consume(c * batch + k, o)?;
                    }
                }
                Ok(())
            }
            PassMode::PerCore => self.run_per_core(files, spec, layers, ahead.max(1), consume),
        }
    }

    /// At most [`Engine::batch_size`] files through one pass.
    fn run_batched<P: AsRef<Path> + Sync>(
        &self,
        files: &[P],
        spec: &InputSpec,
        layers: &[usize],
    ) -> Vec<ImageOutcome> {
        let loaded: Vec<Result<InputTensor, String>> = (load_inputs(files, spec).into_iter())
            .map(|r| r.map_err(|e| format!("{e:#}")))
            .collect();
        let ok: Vec<&InputTensor> = loaded.iter().filter_map(|r| r.as_ref().ok()).collect();
        let Some(&first) = ok.first() else {
            return (loaded.into_iter())
                .map(|r| ImageOutcome::Skipped(r.err().unwrap_or_default()))
                .collect();
        };
        // A short pass is padded with copies of its first image; their maps are dropped.
        let inputs: Vec<&InputTensor> = (0..self.engine.batch_size())
            .map(|k| ok.get(k).copied().unwrap_or(first))
            .collect();
        // Per layer [N · C] tiles, image-major.
        let tiles = summarise_forward(&self.engine, &inputs, layers);
        let mut next_ok = 0;
        (loaded.iter())
            .map(|r| match (r, &tiles) {
                (Err(why), _) => ImageOutcome::Skipped(why.clone()),
                (Ok(_), Err(e)) => ImageOutcome::Skipped(e.to_string()),
                (Ok(_), Ok(tiles)) => {
                    next_ok += 1;
                    ImageOutcome::Summarised(image_tiles(tiles, next_ok - 1, inputs.len()))
                }
            })
            .collect()
    }

    fn run_per_core<P: AsRef<Path> + Sync, E>(
        &self,
        files: &[P],
        spec: &InputSpec,
        layers: &[usize],
        ahead: usize,
        consume: &mut dyn FnMut(usize, ImageOutcome) -> Result<(), E>,
    ) -> Result<(), E> {
        use std::collections::BTreeMap;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Condvar, Mutex, mpsc};
        // Every file a core takes gets an outcome: a panic outside the pass's own guard
        // (decoding) skips the file, so the consumer never waits for one that will not come.
        let one = |path: &Path| -> ImageOutcome {
            let summarised = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                load_input(path, spec)
                    .map_err(|e| format!("{e:#}"))
                    .and_then(|input| {
                        summarise_forward(&self.engine, &[&input], layers)
                            .map_err(|e| e.to_string())
                    })
            }));
            match summarised {
                Ok(Ok(tiles)) => ImageOutcome::Summarised(tiles),
                Ok(Err(why)) => ImageOutcome::Skipped(why),
                Err(_) => ImageOutcome::Skipped("reading it panicked".into()),
            }
        };
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        // Files consumed so far; a core waits on `moved` while its file is `ahead` past it.
        let consumed = Mutex::new(0usize);
        let moved = Condvar::new();
        let (sender, outcomes) = mpsc::channel::<(usize, ImageOutcome)>();
        std::thread::scope(|s| {
            for pool in &self.pools {
                let sender = sender.clone();
                let (one, next, stop, consumed, moved) = (&one, &next, &stop, &consumed, &moved);
                s.spawn(move || {
                    pool.install(|| {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(path) = files.get(i) else { break };
                            let mut done = consumed.lock().unwrap_or_else(|e| e.into_inner());
                            while i >= *done + ahead && !stop.load(Ordering::Relaxed) {
                                done = moved.wait(done).unwrap_or_else(|e| e.into_inner());
                            }
                            drop(done);
                            if stop.load(Ordering::Relaxed)
                                || sender.send((i, one(path.as_ref()))).is_err()
                            {
                                break;
                            }
                        }
                    })
                });
            }
            drop(sender);
            // In file order: outcomes that arrive early wait here (at most `ahead`).
            let mut waiting: BTreeMap<usize, ImageOutcome> = BTreeMap::new();
            let mut result = Ok(());
            let mut expected = 0;
            while expected < files.len() {
                let Some(o) = waiting.remove(&expected) else {
                    match outcomes.recv() {
                        Ok((i, o)) => {
                            waiting.insert(i, o);
                            continue;
                        }
                        // Every file a core takes sends its outcome, so only a core that
                        // panicked outside `one` ends here; the scope re-raises its panic.
                        Err(_) => break,
                    }
                };
                if let Err(e) = consume(expected, o) {
                    result = Err(e);
                    break;
                }
                expected += 1;
                *consumed.lock().unwrap_or_else(|e| e.into_inner()) = expected;
                moved.notify_all();
            }
            // Set under the lock, so a core between its check and its wait cannot miss it.
            {
                let _held = consumed.lock().unwrap_or_else(|e| e.into_inner());
                stop.store(true, Ordering::Relaxed);
            }
            moved.notify_all();
            result
        })
    }
}

/// Image `k`'s `C` tiles of each layer from a pass's `[N · C]` tiles per layer.
fn image_tiles(tiles: &[Vec<TileSummary>], k: usize, n: usize) -> Vec<Vec<TileSummary>> {
    (tiles.iter())
        .map(|layer| {
            let c = layer.len() / n.max(1);
            layer.get(k * c..(k + 1) * c).unwrap_or_default().to_vec()
        })
        .collect()
}
