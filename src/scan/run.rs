//! One scan process: its block of the input list through the engine in steps of a few
//! images ([`SummaryPasses`]: one pass per image on each core on the CPU, batched passes on
//! a GPU), into the running [`ScanState`], checkpointed atomically every few steps
//! ([`super::checkpoint`]: `--resume` after a kill continues exactly), then crops and the
//! scan directory, built in a hidden work folder inside `--out` and moved into place at the
//! end.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use super::accumulate::LayerScan;
use super::checkpoint::{
    CHECKPOINT_FILE, CheckpointKey, ScanState, SkippedAt, files_fingerprint, load_checkpoint,
    save_checkpoint,
};
use super::format::{self, LayerInfo, Manifest, ModelId, Settings, ShardInfo, Skipped};
use super::receptive::{Clip, PixelBox, ReceptiveFields};
use super::shard::Shard;
use super::{Result, ScanError, io_err};
use crate::model::Graph;
use crate::model::preprocess::InputSpec;
use crate::viz::summary_passes::{ImageOutcome, SummaryPasses};
use crate::viz::tile_summary::TileSummary;

/// What to scan and how.
pub struct ScanSpec {
    pub graph: Arc<Graph>,
    pub input_spec: InputSpec,
    /// Node indices of the layers, each with a `[1, C, H, W]` output.
    pub layers: Vec<usize>,
    pub top_k: usize,
    /// Side of the crop PNGs in pixels; 0 writes none.
    pub crop_size: u32,
    /// Images added together ([`SummaryPasses::look_ahead`] bounds how far the cores run
    /// past them; a batched pass's batch size).
    pub step: usize,
    /// When the running state is saved.
    pub checkpoint_every: CheckpointEvery,
}

/// When a scan saves its running state: at the end of the first step at which either limit is
/// reached (always at a step's end, so `--resume` gives the same bytes wherever the
/// checkpoints fell). A checkpoint of EfficientNet-Lite0's 21,008 filters costs ~45 ms of
/// CPU on the thread that feeds the passes: every 16 steps of 16 images, at ~140 images/s on
/// 2 cores, was every 1.8 s (2.5% of a long scan); every [`DEFAULT_CHECKPOINT_SECONDS`] it is
/// 0.15%.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointEvery {
    /// After this many steps, if given.
    pub steps: Option<usize>,
    /// This long after the last checkpoint (or the start).
    pub interval: std::time::Duration,
}

/// `scan --checkpoint-seconds`' default.
pub const DEFAULT_CHECKPOINT_SECONDS: u32 = 30;

impl CheckpointEvery {
    fn due(self, steps_since: usize, since: std::time::Instant) -> bool {
        self.steps.is_some_and(|n| steps_since >= n.max(1)) || since.elapsed() >= self.interval
    }
}

/// The whole sorted input list and this process's shard of it.
pub struct ScanInputs {
    pub all: Vec<PathBuf>,
    pub shard: Option<Shard>,
}

impl ScanInputs {
    fn range(&self) -> std::ops::Range<usize> {
        match self.shard {
            Some(s) => s.range(self.all.len()),
            None => 0..self.all.len(),
        }
    }
}

/// What the caller is told along the way (for a progress bar and warnings).
pub enum Event<'a> {
    /// `done` of `total` images of this process handled (`done > 0` at start: resumed).
    Progress {
        done: usize,
        total: usize,
    },
    Skipped {
        path: &'a Path,
        reason: &'a str,
    },
    /// Writing crops: `done` of `total` images.
    Crops {
        done: usize,
        total: usize,
    },
}

/// Runs the scan and writes its directory: `out` itself for a whole scan, or
/// `out/shard-IIII-of-NNNN`. Returns that directory.
pub fn run(
    spec: &ScanSpec,
    passes: &SummaryPasses,
    inputs: &ScanInputs,
    out: &Path,
    resume: bool,
    on: &mut dyn FnMut(Event),
) -> Result<PathBuf> {
    let graph = &spec.graph;
    let range = inputs.range();
    let files = &inputs.all[range.clone()];
    let (final_dir, work) = match inputs.shard {
        Some(s) => (
            out.join(s.dir_name()),
            out.join(format!(".partial-{}", s.dir_name())),
        ),
        None => (out.to_path_buf(), out.join(".partial-scan")),
    };
    let layers: Vec<(usize, [usize; 3])> = (spec.layers.iter())
        .map(|&i| {
            let node = graph.nodes.get(i);
            let dims = node.and_then(|n| n.feature_map_dims());
            dims.map(|(c, h, w)| (i, [c, h, w])).ok_or_else(|| {
                ScanError::Layers(format!("node {i} has no [1, C, H, W] output to scan"))
            })
        })
        .collect::<Result<_>>()?;
    if layers.is_empty() {
        return Err(ScanError::Layers("no layer to scan".into()));
    }
    let settings = Settings {
        size: spec.input_spec.size_hw,
        mean: spec.input_spec.mean,
        std: spec.input_spec.std,
        fit: format!("{:?}", spec.input_spec.fit).to_lowercase(),
        crop_size: spec.crop_size,
        inputs_total: inputs.all.len(),
    };
    let shard_info = inputs.shard.map(|s| ShardInfo {
        index: s.index,
        count: s.count,
        first: range.start,
        end: range.end,
    });
    let names: Vec<String> = (layers.iter())
        .map(|&(i, _)| graph.nodes[i].name.clone())
        .collect();
    let key = CheckpointKey {
        model_fingerprint: graph.fingerprint.clone(),
        layers: names.clone(),
        settings: settings.clone(),
        shard: shard_info,
        files: files_fingerprint(files),
        top_k: spec.top_k,
        batch: passes.images_per_pass(),
    };
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let checkpoint = work.join(CHECKPOINT_FILE);
    let mut state = match resume
        .then(|| load_checkpoint(&checkpoint, &key))
        .transpose()?
    {
        Some(Some(state)) => state,
        _ => {
            if work.exists() {
                std::fs::remove_dir_all(&work).map_err(io_err(&work))?;
            }
            std::fs::create_dir_all(&work).map_err(io_err(&work))?;
            ScanState {
                key,
                next_file: 0,
                images: 0,
                skipped: Vec::new(),
                layers: (layers.iter().zip(&names))
                    .map(|(&(_, shape), name)| LayerScan::new(name.clone(), shape))
                    .collect(),
            }
        }
    };

    let layer_nodes: Vec<usize> = layers.iter().map(|&(i, _)| i).collect();
    let step = spec.step.max(1);
    let mut since_checkpoint = 0;
    let mut last_checkpoint = std::time::Instant::now();
    on(Event::Progress {
        done: state.next_file,
        total: files.len(),
    });
    // A step's images are added (in file order) at its end while the cores run the next
    // ones, layer by layer (each layer's running state stays in cache over the step's
    // images); when `checkpoint_every` says, the state is saved.
    let first = state.next_file;
    let ahead = passes.look_ahead(step);
    let remaining = &files[first..];
    let mut pending: Vec<Vec<Vec<TileSummary>>> = Vec::with_capacity(step);
    passes.run_ordered::<_, ScanError>(
        remaining,
        &spec.input_spec,
        &layer_nodes,
        ahead,
        &mut |j, outcome| {
            let file = first + j;
            match outcome {
                ImageOutcome::Summarised(tiles) => pending.push(tiles),
                ImageOutcome::Skipped(why) => skip(&mut state, files, file, why, on),
            }
            state.next_file = file + 1;
            if (j + 1) % step == 0 || state.next_file == files.len() {
                let first_image = state.images;
                for (l, layer) in state.layers.iter_mut().enumerate() {
                    for (k, image) in pending.iter().enumerate() {
                        layer.add_summaries(&image[l], first_image + k as u64, 1, spec.top_k);
                    }
                }
                state.images += pending.len() as u64;
                pending.clear();
                since_checkpoint += 1;
                if (spec.checkpoint_every).due(since_checkpoint, last_checkpoint)
                    && state.next_file < files.len()
                {
                    save_checkpoint(&checkpoint, &state)?;
                    since_checkpoint = 0;
                    last_checkpoint = std::time::Instant::now();
                }
                on(Event::Progress {
                    done: state.next_file,
                    total: files.len(),
                });
            }
            Ok(())
        },
    )?;
    if state.images == 0 {
        return Err(ScanError::NothingScanned {
            skipped: state.skipped.len(),
            first: state.skipped.first().map_or(String::new(), |s| {
                format!("{}: {}", files[s.file].display(), s.reason)
            }),
        });
    }

    let skipped_files: HashSet<usize> = state.skipped.iter().map(|s| s.file).collect();
    let scanned: Vec<&PathBuf> = (files.iter().enumerate())
        .filter(|(j, _)| !skipped_files.contains(j))
        .map(|(_, f)| f)
        .collect();
    let stems = crate::format::stems::unique_stems(names.iter().map(String::as_str));
    let manifest = Manifest {
        version: format::SCAN_FORMAT_VERSION,
        model: ModelId {
            name: graph.name.clone(),
            fingerprint: graph.fingerprint.clone(),
        },
        layers: (layers.iter().zip(&names).zip(&stems))
            .map(|((&(_, shape), name), stem)| LayerInfo {
                name: name.clone(),
                shape,
                stem: stem.clone(),
            })
            .collect(),
        images: scanned.iter().map(|p| p.display().to_string()).collect(),
        skipped: (state.skipped.iter())
            .map(|s| Skipped {
                path: files[s.file].display().to_string(),
                reason: s.reason.clone(),
            })
            .collect(),
        top_k: spec.top_k,
        settings,
        shard: shard_info,
        missing_shards: Vec::new(),
    };
    let rf = ReceptiveFields::new(graph)
        .ok_or_else(|| ScanError::Layers("the model has no 4-D image input".into()))?;
    // Before the crops, which can take long, the last steps are saved too (while the
    // receptive fields are worked out), so that a kill there resumes at the crops. Without
    // crops the files below take well under a second, and a kill resumes from the last
    // periodic checkpoint (each costs ~60 ms of CPU for EfficientNet-Lite0's 21,008 filters).
    let save_final = spec.crop_size > 0 && since_checkpoint > 0;
    let (saved, topk) = rayon::join(
        || save_final.then(|| save_checkpoint(&checkpoint, &state)),
        || topk_file(&state.layers, &layers, &rf),
    );
    saved.transpose()?;
    if spec.crop_size > 0 {
        super::crop::write_crops(
            (&spec.input_spec, spec.crop_size),
            &rf,
            &layers,
            &manifest,
            &topk,
            &scanned,
            &work,
            &mut |done, total| on(Event::Crops { done, total }),
        )?;
    }
    let (topk_written, stats_written) = rayon::join(
        || write_topk(&work.join(format::TOPK_FILE), &topk),
        || {
            let csv = format::stats_csv(&state.layers);
            write_file(&work.join(format::STATS_FILE), csv.as_bytes())
        },
    );
    topk_written?;
    stats_written?;
    write_json(&work.join(format::MANIFEST_FILE), &manifest)?;
    match std::fs::remove_file(&checkpoint) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&checkpoint)(e))?,
        _ => {}
    }
    publish(&work, &final_dir, inputs.shard.is_some())?;
    Ok(final_dir)
}

fn skip(
    state: &mut ScanState,
    files: &[PathBuf],
    file: usize,
    reason: String,
    on: &mut dyn FnMut(Event),
) {
    on(Event::Skipped {
        path: &files[file],
        reason: &reason,
    });
    // Outcomes come in file order, so the list stays sorted.
    state.skipped.push(SkippedAt { file, reason });
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic_file::write_atomic(path, bytes, false).map_err(io_err(path))
}

/// `value` as indented JSON at `path`.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(value).map_err(format_err(path))?;
    json.push(b'\n');
    write_file(path, &json)
}

/// `topk.json` at `path` ([`super::topk_json::topk_json`]: one line per filter).
pub(crate) fn write_topk(path: &Path, topk: &format::TopkFile) -> Result<()> {
    let json = super::topk_json::topk_json(topk).map_err(format_err(path))?;
    write_file(path, &json)
}

fn format_err(path: &Path) -> impl FnOnce(serde_json::Error) -> ScanError + '_ {
    move |e| ScanError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// `topk.json` from the state, each entry with its unit's input pixels.
fn topk_file(
    states: &[LayerScan],
    layers: &[(usize, [usize; 3])],
    rf: &ReceptiveFields,
) -> format::TopkFile {
    format::TopkFile {
        layers: (states.par_iter().zip(layers))
            .map(|(state, &(node, _))| {
                let mut fields = rf.layer(node, Clip::Valid);
                format::TopkLayer {
                    name: state.name.clone(),
                    filters: (state.top.iter().enumerate())
                        .map(|(k, top)| format::TopkFilter {
                            filter: k + 1,
                            top: (top.iter())
                                .map(|e| {
                                    let b = fields.field(e.y as usize, e.x as usize);
                                    format::TopkEntry {
                                        image: e.image,
                                        value: e.value,
                                        y: e.y,
                                        x: e.x,
                                        pixel_box: b.map(PixelBox::to_array),
                                    }
                                })
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

/// Moves the finished work folder into place. A shard folder is replaced whole (rename);
/// a whole scan's files are moved into `--out` one by one, `scan.json` last.
pub(crate) fn publish(work: &Path, final_dir: &Path, replace_dir: bool) -> Result<()> {
    if replace_dir {
        let old = final_dir.with_file_name(format!(
            ".old-{}",
            final_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("shard")
        ));
        if final_dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
            }
            std::fs::rename(final_dir, &old).map_err(io_err(final_dir))?;
        }
        std::fs::rename(work, final_dir).map_err(io_err(work))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        return Ok(());
    }
    let examples = final_dir.join(format::EXAMPLES_DIR);
    if examples.exists() {
        std::fs::remove_dir_all(&examples).map_err(io_err(&examples))?;
    }
    for name in [
        format::EXAMPLES_DIR,
        format::TOPK_FILE,
        format::STATS_FILE,
        format::MANIFEST_FILE,
    ] {
        let from = work.join(name);
        if from.exists() {
            std::fs::rename(&from, final_dir.join(name)).map_err(io_err(&from))?;
        }
    }
    std::fs::remove_dir_all(work).map_err(io_err(work))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::CheckpointEvery;

    #[test]
    fn checkpoints_fall_due_after_their_steps_or_their_interval() {
        let now = Instant::now();
        let half_a_minute = Duration::from_secs(u64::from(super::DEFAULT_CHECKPOINT_SECONDS));
        let every = |steps| CheckpointEvery {
            steps,
            interval: half_a_minute,
        };
        assert!(!every(Some(3)).due(2, now));
        assert!(every(Some(3)).due(3, now));
        // Zero steps would never wait: taken as one.
        assert!(every(Some(0)).due(1, now));
        assert!(!every(None).due(1000, now));
        if let Some(then) = now.checked_sub(Duration::from_secs(60)) {
            // Whichever comes first.
            assert!(every(None).due(0, then) && every(Some(3)).due(0, then));
        }
    }
}
