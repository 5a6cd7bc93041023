//! `convlens featvis`: feature visualisation by optimisation ([`crate::engine::methods::featvis`])
//! for the selected filters of the selected layers, written as PNGs and `featvis.json`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::json;

use super::ModelArgs;
use crate::engine::Engine;
use std::ops::ControlFlow;

use crate::engine::methods::featvis::cache::{self, CachedEvent, FeatvisCache, featvis_cached};
use crate::engine::methods::featvis::{
    FeatvisEvent, FeatvisImage, FeatvisSpec, Objective, Parameterisation, RECORD_EVERY,
};
use crate::export::{self, LayerSelection};
use crate::format::architecture::layer_stems;

#[derive(Args, Debug)]
pub struct FeatvisArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Layers: `conv` (every convolution) or comma-separated names.
    #[arg(long)]
    pub layers: String,
    /// Output folder: `featvis/<layer>_<n>.png` and `featvis.json` go in it.
    #[arg(long)]
    pub out: PathBuf,
    /// Filters, counted from 1: ranges and single numbers, e.g. `1-64,100`; default all.
    #[arg(long, value_parser = parse_filters)]
    pub filters: Option<FilterList>,
    /// Optimisation steps.
    #[arg(long, default_value_t = 512)]
    pub steps: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    /// What a filter's score is: the mean of its map, or its centre unit.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Channel)]
    pub objective: ObjectiveArg,
    /// Seeds the initial noise (filter k's start depends only on the seed and k).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Optimise the RGB values directly instead of Lucid's decorrelated colour axes.
    #[arg(long)]
    pub no_decorrelate: bool,
    /// What is optimised: Lucid's FFT parameterisation (a spectrum damped as 1/f) or the
    /// pixels themselves.
    #[arg(long, value_enum, default_value_t = ParamArg::Fft)]
    pub param: ParamArg,
    /// Lucid's random transforms every step (pad 12, jitter 8, scale ±10%, rotate ±10°,
    /// jitter 4), or none. `--param pixel --transforms none` is plain gradient ascent.
    #[arg(long, value_enum, default_value_t = TransformsArg::Standard)]
    pub transforms: TransformsArg,
    /// Filters optimised together, one batched forward and reverse pass per step.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,
    /// Neither read nor fill the feature-vis cache (`$CONVLENS_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/convlens`, else `~/.cache/convlens`), which the viewer shares.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ParamArg {
    Fft,
    Pixel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TransformsArg {
    Standard,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    Channel,
    Neuron,
}

/// `--filters`: inclusive ranges of filter numbers (from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterList(pub Vec<std::ops::RangeInclusive<usize>>);

/// `1-64,100` → `[1..=64, 100..=100]`; numbers from 1.
fn parse_filters(s: &str) -> Result<FilterList, String> {
    let ranges = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let parse = |v: &str| {
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| format!("'{v}' is not a filter number (from 1)"))
            };
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                return Err(format!("'{part}' is an empty range"));
            }
            Ok(a..=b)
        })
        .collect::<Result<Vec<_>, String>>()?;
    if ranges.is_empty() {
        return Err("no filter numbers".into());
    }
    Ok(FilterList(ranges))
}

/// `convlens featvis`.
pub fn featvis_command(args: &FeatvisArgs) -> Result<()> {
    let (m, layers) = load_for_featvis(args)?;
    let graph = &m.graph;
    if layers.is_empty() {
        bail!("--layers {} selects no layer", args.layers);
    }
    let stems = layer_stems(graph);
    let device = args.model.device();
    let engine = Engine::new(Arc::clone(graph), device.device.clone());
    let spec = FeatvisSpec {
        steps: args.steps,
        lr: args.lr as f32,
        objective: match args.objective {
            ObjectiveArg::Channel => Objective::Channel,
            ObjectiveArg::Neuron => Objective::Neuron,
        },
        param: Parameterisation::Pixel {
            mean: m.spec.mean,
            std: m.spec.std,
            decorrelate: !args.no_decorrelate,
            fft: args.param == ParamArg::Fft,
            transforms: args.transforms == TransformsArg::Standard,
        },
        seed: args.seed,
        batch: usize::from(args.batch),
    };
    let dir = args.out.join("featvis");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cache = if args.no_cache {
        None
    } else {
        user_cache(graph, &spec)?
    };
    if let Some(cache) = &cache {
        eprintln!(
            "cache: {} (--no-cache: neither read nor fill it)",
            cache.dir().display()
        );
    }
    eprintln!(
        "model: {}, device: {}; {} steps per filter, {} filters per pass",
        graph.name, device.description, spec.steps, spec.batch
    );
    let mut layer_docs = Vec::new();
    let started = std::time::Instant::now();
    let (mut optimised, mut optimised_now) = (0usize, 0usize);
    for &layer in &layers {
        let node = &graph.nodes[layer];
        let Some((channels, _, _)) = node.feature_map_dims() else {
            eprintln!(
                "note: layer '{}' has no per-channel maps ({:?}); skipped",
                node.name,
                node.output_shape()
            );
            continue;
        };
        let mut filters: Vec<usize> = match &args.filters {
            None => (0..channels).collect(),
            Some(FilterList(ranges)) => ranges
                .iter()
                .flat_map(|r| r.clone())
                .filter(|&n| n <= channels)
                .map(|n| n - 1)
                .collect(),
        };
        let mut seen = std::collections::HashSet::new();
        filters.retain(|&f| seen.insert(f)); // `1-4,3`: filter 3 once
        if filters.is_empty() {
            eprintln!(
                "note: layer '{}' has none of the --filters; skipped",
                node.name
            );
            continue;
        }
        let stem = &stems[layer];
        let run = LayerRun {
            engine: &engine,
            cache: cache.as_ref(),
            layer,
            stem,
            spec: &spec,
        };
        let (images, computed) = run.write(&filters, &dir)?;
        optimised_now += computed;
        optimised += images.len();
        layer_docs.push(json!({
            "name": node.name,
            "stem": stem,
            "filters": images.iter().map(|img| json!({
                "filter": img.filter + 1,
                "png": format!("featvis/{stem}_{}.png", img.filter + 1),
                "objective": img.objective.last().map(|o| o.1),
                "trace": img.objective.iter()
                    .map(|&(step, v)| json!([step, v]))
                    .collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
    }
    let doc = json!({
        "version": 1,
        "model": graph.name,
        "settings": {
            "steps": spec.steps,
            "lr": args.lr,
            "objective": format!("{:?}", spec.objective).to_lowercase(),
            "param": match args.param {
                ParamArg::Fft => "fft: Lucid's spectrum (decay power 1, /4), then colour \
                                  decorrelation (see decorrelate), sigmoid, the model's mean/std; Adam",
                ParamArg::Pixel => "pixel: colour decorrelation (see decorrelate), sigmoid, the \
                                    model's mean/std; Adam",
            },
            "transforms": match args.transforms {
                TransformsArg::Standard => "standard: pad 12 (grey), jitter 8, scale 0.9..1.1, \
                                            rotate -10..10 deg, jitter 4, resampled to the \
                                            model's input; a new draw per filter and step",
                TransformsArg::None => "none",
            },
            "decorrelate": !args.no_decorrelate,
            "seed": spec.seed,
            "batch": spec.batch,
            "trace_every": RECORD_EVERY,
        },
        "layers": layer_docs,
    });
    let path = args.out.join("featvis.json");
    export::atomic_write(&path, serde_json::to_string_pretty(&doc)?.as_bytes(), true)?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {optimised} images and {} in {seconds:.1} s: {optimised_now} optimised ({:.2} s \
         per filter), {} from the cache",
        path.display(),
        seconds / optimised_now.max(1) as f64,
        optimised - optimised_now
    );
    Ok(())
}

/// The model and the selected layers (node indices). `--size` optimises at another size than
/// the model's own (Lucid's images are 128 px): the whole model at that size where it takes
/// it, else the model up to the deepest selected layer (a classifier's fixed `Reshape` after
/// it does not matter).
fn load_for_featvis(args: &FeatvisArgs) -> Result<(crate::model::LoadedModel, Vec<usize>)> {
    let selection = LayerSelection::parse(&args.layers);
    let whole = args.model.load_sized(true, None);
    let m = match whole {
        Ok(m) => m,
        Err(e) if args.model.size.is_some() => {
            let native = super::ModelArgs {
                size: None,
                ..args.model.clone()
            };
            let native = native.load().map_err(|_| e)?;
            let layers = selection.resolve(&native.graph)?;
            let Some(&deepest) = layers.iter().max() else {
                bail!("--layers {} selects no layer", args.layers);
            };
            let last = &native.graph.nodes[deepest].name;
            args.model.load_sized(true, Some(last))?
        }
        Err(e) => return Err(e),
    };
    let layers = selection.resolve(&m.graph)?;
    Ok((m, layers))
}

/// The user's feature-vis cache for `graph` under `spec` (`None` when no cache folder is
/// known: nothing is kept).
pub(super) fn user_cache(
    graph: &crate::model::Graph,
    spec: &FeatvisSpec,
) -> Result<Option<FeatvisCache>> {
    let Some(root) = cache::default_root() else {
        return Ok(None);
    };
    Ok(Some(FeatvisCache::new(
        &root,
        &graph.fingerprint,
        spec,
        input_hw(graph)?,
    )))
}

/// `[H, W]` of the model's one RGB image input.
fn input_hw(graph: &crate::model::Graph) -> Result<[usize; 2]> {
    let shape = graph
        .image_input()
        .map(|i| i.shape.clone())
        .unwrap_or_default();
    match shape.as_slice() {
        &[1, 3, h, w] => Ok([h, w]),
        _ => bail!("feature vis needs one [1, 3, H, W] image input; the model's is {shape:?}"),
    }
}

/// Feature visualisations of one layer, written as PNGs with a progress bar (shared by
/// `featvis` and `export --methods featvis`).
pub(super) struct LayerRun<'a> {
    pub engine: &'a Engine,
    pub cache: Option<&'a FeatvisCache>,
    pub layer: usize,
    pub stem: &'a str,
    pub spec: &'a FeatvisSpec,
}

impl LayerRun<'_> {
    /// Optimises (or reads from the cache) `filters` and writes `dir/<stem>_<n>.png` for each
    /// as its chunk finishes. Returns the images and how many were optimised (not cached).
    pub fn write(
        &self,
        filters: &[usize],
        dir: &std::path::Path,
    ) -> Result<(Vec<FeatvisImage>, usize)> {
        let graph = self.engine.graph();
        let hw = input_hw(graph)?;
        let steps = self.spec.steps.max(1);
        let bar = indicatif::ProgressBar::new((filters.len() * steps) as u64).with_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {percent}% ({eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let name = &graph.nodes[self.layer].name;
        let (mut done, mut images) = (0usize, Vec::with_capacity(filters.len()));
        let mut computed = 0;
        // First filter of each chunk being optimised → its steps × filters so far.
        let mut in_flight = std::collections::BTreeMap::new();
        let mut failed: Option<anyhow::Error> = None;
        bar.set_message(format!("{name} 0/{} filters", filters.len()));
        let _: ControlFlow<()> = featvis_cached(
            self.engine,
            self.cache,
            (self.layer, self.stem),
            filters,
            self.spec,
            &mut |event| {
                match event {
                    CachedEvent::Featvis(FeatvisEvent::Step {
                        filters: chunk,
                        step,
                        ..
                    }) => {
                        if step == 1 {
                            computed += chunk.len();
                        }
                        // Chunks optimised at once report their steps interleaved.
                        in_flight.insert(chunk[0], step * chunk.len());
                        bar.set_position((done * steps + in_flight.values().sum::<usize>()) as u64)
                    }
                    CachedEvent::Featvis(FeatvisEvent::Chunk(chunk)) => {
                        if let Err(e) = write_pngs(dir, self.stem, chunk, hw) {
                            failed = Some(e);
                            return ControlFlow::Break(());
                        }
                        done += chunk.len();
                        for image in chunk {
                            in_flight.remove(&image.filter);
                        }
                        images.extend_from_slice(chunk);
                        bar.set_position((done * steps) as u64);
                        bar.set_message(format!("{name} {done}/{} filters", filters.len()));
                    }
                    CachedEvent::CacheFailed(e) => bar.println(format!(
                        "warning: feature-vis cache {}: {e} (results are still written)",
                        self.cache
                            .map(|c| c.dir().display().to_string())
                            .unwrap_or_default()
                    )),
                }
                ControlFlow::Continue(())
            },
        )?;
        bar.finish_and_clear();
        match failed {
            Some(e) => Err(e),
            None => Ok((images, computed)),
        }
    }
}

/// `<stem>_<n>.png` in `dir` for each image of a chunk (`[3, H, W]` in [0, 1]).
fn write_pngs(
    dir: &std::path::Path,
    stem: &str,
    chunk: &[FeatvisImage],
    [h, w]: [usize; 2],
) -> Result<()> {
    for img in chunk {
        let rgb = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let at = |p: usize| {
                let v = img.image[p * h * w + y as usize * w + x as usize];
                (v.clamp(0.0, 1.0) * 255.0).round() as u8
            };
            image::Rgb([at(0), at(1), at(2)])
        });
        let path = dir.join(format!("{stem}_{}.png", img.filter + 1));
        let mut bytes = Vec::new();
        rgb.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .with_context(|| format!("encoding {}", path.display()))?;
        export::atomic_write(&path, &bytes, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_lists_parse_and_refuse_nonsense() {
        assert_eq!(parse_filters("1-3, 7"), Ok(FilterList(vec![1..=3, 7..=7])));
        for bad in ["0", "3-1", "a", "", "1-"] {
            assert!(parse_filters(bad).is_err(), "{bad}");
        }
    }
}
