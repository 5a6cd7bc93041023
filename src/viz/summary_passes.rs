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

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Decodes `files` (with `spec`) and summarises the outputs of the nodes `layers` for
    /// each: one outcome per file, in order. A batched step takes at most
    /// [`Engine::batch_size`] files; a failed batched pass skips every image in it.
    pub fn run<P: AsRef<Path> + Sync>(
        &self,
        files: &[P],
        spec: &InputSpec,
        layers: &[usize],
    ) -> Vec<ImageOutcome> {
        match self.mode() {
            PassMode::Batched => self.run_batched(files, spec, layers),
            PassMode::PerCore => self.run_per_core(files, spec, layers),
        }
    }

    fn run_batched<P: AsRef<Path> + Sync>(
        &self,
        files: &[P],
        spec: &InputSpec,
        layers: &[usize],
    ) -> Vec<ImageOutcome> {
        let batch = self.engine.batch_size();
        let mut outcomes: Vec<ImageOutcome> = Vec::with_capacity(files.len());
        for chunk in files.chunks(batch.max(1)) {
            let loaded: Vec<Result<InputTensor, String>> = (load_inputs(chunk, spec).into_iter())
                .map(|r| r.map_err(|e| format!("{e:#}")))
                .collect();
            let ok: Vec<&InputTensor> = loaded.iter().filter_map(|r| r.as_ref().ok()).collect();
            let Some(&first) = ok.first() else {
                outcomes.extend(
                    loaded
                        .into_iter()
                        .map(|r| ImageOutcome::Skipped(r.err().unwrap_or_default())),
                );
                continue;
            };
            // A short pass is padded with copies of its first image; their maps are dropped.
            let inputs: Vec<&InputTensor> = (0..batch)
                .map(|k| ok.get(k).copied().unwrap_or(first))
                .collect();
            // Per layer [N · C] tiles, image-major.
            let tiles = summarise_forward(&self.engine, &inputs, layers);
            let mut next_ok = 0;
            for r in &loaded {
                outcomes.push(match (r, &tiles) {
                    (Err(why), _) => ImageOutcome::Skipped(why.clone()),
                    (Ok(_), Err(e)) => ImageOutcome::Skipped(e.to_string()),
                    (Ok(_), Ok(tiles)) => {
                        next_ok += 1;
                        ImageOutcome::Summarised(image_tiles(tiles, next_ok - 1, inputs.len()))
                    }
                });
            }
        }
        outcomes
    }

    fn run_per_core<P: AsRef<Path> + Sync>(
        &self,
        files: &[P],
        spec: &InputSpec,
        layers: &[usize],
    ) -> Vec<ImageOutcome> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let one = |path: &Path| -> Result<Vec<Vec<TileSummary>>, String> {
            let input = load_input(path, spec).map_err(|e| format!("{e:#}"))?;
            summarise_forward(&self.engine, &[&input], layers).map_err(|e| e.to_string())
        };
        // Each core takes the next image until none is left; outcomes keep their slot.
        let mut done: Vec<Vec<(usize, ImageOutcome)>> = std::thread::scope(|s| {
            let workers: Vec<_> = (self.pools.iter())
                .map(|pool| {
                    let (next, one) = (&next, &one);
                    s.spawn(move || {
                        pool.install(|| {
                            let mut mine = Vec::new();
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                let Some(path) = files.get(i) else { break };
                                mine.push((i, outcome(one(path.as_ref()))));
                            }
                            mine
                        })
                    })
                })
                .collect();
            (workers.into_iter())
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        // A panicking pass: its images are reported, not lost silently.
                        Vec::new()
                    })
                })
                .collect()
        });
        let mut outcomes: Vec<Option<ImageOutcome>> = vec![None; files.len()];
        for (i, o) in done.drain(..).flatten() {
            outcomes[i] = Some(o);
        }
        (outcomes.into_iter())
            .map(|o| o.unwrap_or_else(|| ImageOutcome::Skipped("its pass panicked".into())))
            .collect()
    }
}

fn outcome(r: Result<Vec<Vec<TileSummary>>, String>) -> ImageOutcome {
    match r {
        Ok(tiles) => ImageOutcome::Summarised(tiles),
        Err(why) => ImageOutcome::Skipped(why),
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
