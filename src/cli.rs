//! The command line (the binary's edge, where `anyhow` turns every library error into one
//! clear message): argument parsing, model/input resolution shared by the subcommands, and
//! the `info` command; `view`, `bench`, `export`, `stats`, `featvis`, `scan` and
//! `annotations` have modules of their own.

pub mod annotations;
mod bench;
mod export;
mod featvis;
#[cfg(test)]
mod readme_forms;
mod scan;
mod stats;
mod view;

pub use bench::{BenchArgs, bench};
pub use export::{ExportArgs, export};
pub use featvis::{FeatvisArgs, featvis_command};
pub use scan::{ScanArgs, scan_command};
pub use stats::{StatsArgs, stats};
pub use view::{ViewArgs, cameras, view};

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::engine::{self, DeviceChoice};
use crate::model::preprocess::Fit;
use crate::model::{LoadedModel, default};

#[derive(Parser, Debug)]
#[command(
    name = "convlens",
    version,
    about = "A native, GPU-accelerated visualiser of convolutional neural networks"
)]
pub struct Cli {
    /// Always present after [`Cli::try_parse_with_default`] (`view` when none is named).
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses `argv` (program name first) with `view` as the default command: when the first
    /// argument names no subcommand (`convlens model.onnx --input x.jpg`, `convlens
    /// --screenshot out.png`, or nothing at all), it is parsed as `convlens view …`. Top-level
    /// `--help` and `--version` keep their meaning.
    pub fn try_parse_with_default<I, T>(argv: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
        let names_command = |arg: &std::ffi::OsStr| {
            let Some(arg) = arg.to_str() else {
                return false;
            };
            matches!(arg, "-h" | "--help" | "-V" | "--version" | "help")
                || <Cli as clap::CommandFactory>::command()
                    .get_subcommands()
                    .any(|c| c.get_name() == arg || c.get_all_aliases().any(|a| a == arg))
        };
        if !argv.get(1).is_some_and(|a| names_command(a)) {
            argv.insert(1.min(argv.len()), "view".into());
        }
        <Cli as Parser>::try_parse_from(argv)
    }

    /// [`Cli::try_parse_with_default`] on the process's arguments; on a parse error clap
    /// prints its message (or the help) and exits. `--version` prints [`version_report`].
    pub fn parse_with_default() -> Cli {
        Self::try_parse_with_default(std::env::args_os()).unwrap_or_else(|e| {
            if e.kind() == clap::error::ErrorKind::DisplayVersion {
                print!("{}", version_report());
                std::process::exit(0);
            }
            e.exit()
        })
    }
}

/// `convlens --version`: the version, the commit it was built from, the cargo features, the
/// CPU kernel path and the GPU adapter `--device auto` would use.
pub fn version_report() -> String {
    let features = if cfg!(feature = "webcam") {
        "webcam"
    } else {
        "none (webcam off)"
    };
    let gpu = match engine::device::adapter_summary() {
        Some((name, true)) => format!("{name}; --device auto computes on it"),
        Some((name, false)) => format!("{name}; software only, --device auto uses the CPU"),
        None => "none found (wgpu sees no adapter); computing on the CPU".to_string(),
    };
    format!(
        "convlens {} (git {})\nfeatures: {features}\nCPU kernels: {}\nGPU adapter: {gpu}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CONVLENS_GIT_REV"),
        engine::device::cpu_kernel_path(),
    )
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the viewer (the default command: `convlens [MODEL.onnx] [flags]` is `convlens
    /// view [MODEL.onnx] [flags]`).
    View(ViewArgs),
    /// Print the architecture: every layer with its type, output shape and parameters.
    Info(InfoArgs),
    /// Run the model on an input and write the paper's data directory.
    Export(ExportArgs),
    /// Per-filter statistics (mean, max, zero fraction, rank, dead) over a folder of images.
    Stats(StatsArgs),
    /// Feature visualisation: the image each filter responds to most, by gradient ascent.
    Featvis(FeatvisArgs),
    /// Dataset scan: every filter's statistics and top-k images (with receptive-field crops)
    /// over a folder or list, batched, resumable, shardable (`scan merge` joins shards).
    Scan(ScanArgs),
    /// Filter annotations (good/bad marks): where they live, set, export as CSV/JSON.
    Annotations(annotations::AnnotationsArgs),
    /// Measure forward, guided backprop, frame and input-to-tiles times (medians).
    Bench(BenchArgs),
    /// List the cameras `view --webcam N|NAME` can open (a build with `--features webcam`).
    Cameras,
}

/// Model choice and preprocessing, shared by every command that runs a model.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// ONNX model file; omitted = the embedded EfficientNet-Lite0.
    pub model: Option<PathBuf>,
    /// Model input size HxW in pixels (needed when the model's input size is dynamic).
    #[arg(long, value_name = "HxW", value_parser = parse_hw)]
    pub size: Option<[usize; 2]>,
    /// Per-channel mean in 0..1 pixel units: x = (pixel/255 - mean)/std.
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation in 0..1 pixel units.
    #[arg(long, value_name = "R,G,B", value_parser = parse_rgb)]
    pub std: Option<[f32; 3]>,
    /// How an image of another aspect ratio is fitted to the model's size.
    #[arg(long, value_enum, default_value_t = Fit::Crop)]
    pub fit: Fit,
    /// Compute device: auto uses a real GPU when there is one, else the CPU.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Class names, one per line, in the order of the model's outputs (default: ImageNet's
    /// for a 1000-way output, else `class N`).
    #[arg(long, value_name = "FILE.txt")]
    pub labels: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print the architecture as JSON (the `architecture.json` format).
    #[arg(long)]
    pub json: bool,
}

fn parse_hw(s: &str) -> Result<[usize; 2], String> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or("expected two sizes like 224x224")?;
    let p = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| (1..=16384).contains(&n))
            .ok_or(format!("'{v}' is not a size in 1..=16384"))
    };
    Ok([p(h)?, p(w)?])
}

fn parse_ui_scale(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.5..=4.0).contains(&v) => Ok(v),
        _ => Err("expected a scale between 0.5 and 4".into()),
    }
}

fn parse_arch_zoom(s: &str) -> Result<f32, String> {
    let (lo, hi) = crate::ui::layout::ARCH_ZOOM_RANGE;
    match s.parse::<f32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("expected a zoom between {lo} and {hi}")),
    }
}

fn parse_rgb(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<f32>()
                .map_err(|_| format!("'{x}' is not a number"))
        })
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [r, g, b] if v.iter().all(|x| x.is_finite()) => Ok([*r, *g, *b]),
        _ => Err("expected three finite numbers R,G,B".into()),
    }
}

/// `--device auto|cpu|gpu`: the engine's [`DeviceChoice`] parsed here, at the CLI edge.
impl clap::ValueEnum for DeviceChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &[DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Gpu]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            DeviceChoice::Auto => PossibleValue::new("auto")
                .help("A real (discrete or integrated) GPU if wgpu finds one, else the CPU"),
            DeviceChoice::Cpu => PossibleValue::new("cpu").help("burn's flex CPU backend"),
            DeviceChoice::Gpu => PossibleValue::new("gpu").help(
                "burn's wgpu backend on the default adapter (a software adapter if that is all there is)",
            ),
        })
    }
}

/// `--fit crop|stretch|pad`.
impl clap::ValueEnum for Fit {
    fn value_variants<'a>() -> &'a [Self] {
        &[Fit::Crop, Fit::Stretch, Fit::Pad]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            Fit::Crop => PossibleValue::new("crop")
                .help("Centre-crop to the model's aspect ratio, then resize (the default)"),
            Fit::Stretch => PossibleValue::new("stretch").help("Resize, ignoring the aspect ratio"),
            Fit::Pad => PossibleValue::new("pad")
                .help("Resize to fit inside, then pad with the mean colour (normalised value 0)"),
        })
    }
}

impl ModelArgs {
    /// The compute device `--device` asks for; a fallback is reported on stderr.
    pub fn device(&self) -> engine::ComputeDevice {
        let device = engine::device::select(self.device);
        if let Some(warning) = &device.warning {
            eprintln!("warning: {warning}");
        }
        device
    }

    /// Loads the model (file or embedded default) and resolves its input spec.
    pub fn load(&self) -> Result<LoadedModel> {
        self.load_sized(false, None)
    }

    /// [`ModelArgs::load`]; with `resize_fixed`, `--size` also replaces a size the file
    /// fixes (shapes inferred afresh: fully convolutional use, such as `featvis --size`);
    /// with `last_node`, the graph ends at that node (what follows is not imported).
    pub fn load_sized(&self, resize_fixed: bool, last_node: Option<&str>) -> Result<LoadedModel> {
        let resize = resize_fixed && self.size.is_some();
        let options = crate::model::ImportOptions {
            input_hw: self.size,
            resize_fixed: resize,
            last_node: last_node.map(str::to_string),
        };
        let at_size = || match self.size {
            Some([h, w]) if resize => format!(" at {h}x{w} (--size)"),
            _ => String::new(),
        };
        let mut m = match &self.model {
            None => LoadedModel {
                graph: Arc::new(default::default_graph_with(&options).with_context(|| {
                    format!("the embedded default model failed to load{}", at_size())
                })?),
                spec: default::default_input_spec(),
                labels: default::imagenet_labels(),
                is_default: true,
            },
            Some(path) if resize => LoadedModel::from_file_with(path, &options)
                .with_context(|| format!("{} cannot be loaded{}", path.display(), at_size()))?,
            Some(path) => LoadedModel::from_file_with(path, &options)?,
        };
        for w in &m.graph.warnings {
            eprintln!("warning: {w}");
        }
        let spec = &mut m.spec;
        match self.size {
            Some(size) if resize => spec.size_hw = size,
            Some(size) if size != spec.size_hw => bail!(
                "--size {}x{} differs from the model's fixed input size {}x{}",
                size[0],
                size[1],
                spec.size_hw[0],
                spec.size_hw[1]
            ),
            _ => {}
        }
        spec.mean = self.mean.unwrap_or(spec.mean);
        spec.std = self.std.unwrap_or(spec.std);
        if spec.std.contains(&0.0) {
            bail!("--std must not contain 0");
        }
        spec.fit = self.fit;
        if let Some(path) = &self.labels {
            m.labels = read_labels(path, &m.graph)?;
        }
        Ok(m)
    }
}

/// Class names from a text file, one per line; there must be one per class score.
fn read_labels(path: &std::path::Path, graph: &crate::model::Graph) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the labels file {}", path.display()))?;
    let labels: Vec<String> = text
        .trim_end_matches(['\n', '\r'])
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    if !engine::output_is_class_vector(graph) {
        bail!("--labels: the model's output is not a class vector, so it has no classes to name");
    }
    let classes: usize = graph
        .outputs
        .first()
        .and_then(|o| graph.shapes.get(o))
        .map(|s| s.iter().product())
        .unwrap_or(0);
    if labels.len() != classes {
        bail!(
            "{} has {} labels, the model has {classes} classes",
            path.display(),
            labels.len()
        );
    }
    Ok(labels)
}

/// `convlens info`.
pub fn info(args: &InfoArgs) -> Result<()> {
    let m = args.model.load()?;
    let g = &m.graph;
    if args.json {
        println!(
            "{}",
            crate::format::architecture::Architecture::of(g).to_json_pretty()
        );
        return Ok(());
    }
    let input = g
        .image_input()
        .map(|i| format!("{} {:?}", i.name, i.shape))
        .unwrap_or_default();
    println!(
        "{} — {} layers, {} parameters, opset {}, input {input}",
        g.name,
        g.nodes.len(),
        g.parameter_count(),
        g.opset
    );
    println!(
        "keeping every activation needs {:.1} MiB; {} layers have per-channel maps",
        g.activation_bytes() as f64 / (1 << 20) as f64,
        g.feature_map_layers().count()
    );
    println!(
        "{:>4}  {:<14} {:<22} {:>12}  name",
        "#", "type", "output", "params"
    );
    for (i, n) in g.nodes.iter().enumerate() {
        let params: usize = n
            .inputs
            .iter()
            .filter_map(|x| g.constants.get(x))
            .map(|c| c.numel())
            .sum();
        println!(
            "{:>4}  {:<14} {:<22} {:>12}  {}",
            i,
            n.op.type_name(),
            format!("{:?}", n.output_shape()),
            params,
            n.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::view::check_webcam_support;
    use super::*;

    #[test]
    fn flag_parsers_reject_nonsense() {
        assert_eq!(parse_hw("224x200"), Ok([224, 200]));
        assert!(parse_hw("0x5").is_err());
        assert!(parse_hw("224").is_err());
        assert_eq!(parse_rgb("0.5, 0.4,0.3"), Ok([0.5, 0.4, 0.3]));
        assert!(parse_rgb("1,2").is_err());
        assert!(parse_rgb("1,2,nan").is_err());
    }

    fn parse_view(args: &[&str]) -> Result<ViewArgs, clap::Error> {
        let argv = ["convlens", "view"].iter().chain(args);
        match Cli::try_parse_with_default(argv)?.command {
            Command::View(v) => Ok(v),
            other => panic!("not a view command: {other:?}"),
        }
    }

    #[test]
    fn webcam_takes_an_optional_camera_index_or_name() {
        use crate::app::camera_choice::CameraSelector::{Index, Name};
        assert_eq!(parse_view(&[]).unwrap().webcam, None);
        assert_eq!(parse_view(&["--webcam"]).unwrap().webcam, Some(Index(0)));
        assert_eq!(
            parse_view(&["--webcam", "2"]).unwrap().webcam,
            Some(Index(2))
        );
        assert_eq!(parse_view(&["--webcam=1"]).unwrap().webcam, Some(Index(1)));
        let named = parse_view(&["--webcam", "C920", "--webcam-size", "640x480"]).unwrap();
        assert_eq!(named.webcam, Some(Name("C920".into())));
        assert_eq!(named.webcam_size, Some([640, 480]));
        let v = parse_view(&["m.onnx", "--webcam"]).unwrap();
        assert_eq!(
            (v.model.model, v.webcam),
            (Some("m.onnx".into()), Some(Index(0)))
        );
        let v = parse_view(&["--webcam", "3", "m.onnx", "--layer", "conv1"]).unwrap();
        assert_eq!(
            (v.model.model, v.webcam),
            (Some("m.onnx".into()), Some(Index(3)))
        );
        let v = parse_view(&["--webcam", "--layer", "conv1"]).unwrap();
        assert_eq!(
            (v.webcam, v.layer.as_deref()),
            (Some(Index(0)), Some("conv1"))
        );
        assert!(parse_view(&["--webcam", "-1"]).is_err());
        // A model after --webcam would be a camera name: refused with the fix.
        let err = parse_view(&["--webcam", "m.onnx"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("give MODEL before --webcam"), "{err}");
        // A size needs a camera.
        assert!(parse_view(&["--webcam-size", "640x480"]).is_err());
    }

    #[test]
    fn webcam_conflicts_with_other_inputs_and_screenshots() {
        for other in [
            &["--input", "a.png"][..],
            &["--data", "dir"][..],
            &["--screenshot", "out.png"][..],
        ] {
            let args: Vec<&str> = ["--webcam"].iter().chain(other).copied().collect();
            let err = parse_view(&args).err().unwrap();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{args:?}"
            );
            // Either order.
            let args: Vec<&str> = other.iter().chain(&["--webcam"]).copied().collect();
            assert!(parse_view(&args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn webcam_without_the_feature_says_how_to_get_it() {
        assert!(check_webcam_support(false).is_ok());
        let result = check_webcam_support(true);
        if cfg!(feature = "webcam") {
            assert!(result.is_ok());
        } else {
            let message = result.unwrap_err().to_string();
            assert_eq!(
                message,
                "this convlens was built without webcam support; rebuild with \
                 `cargo run --features webcam -- view --webcam`"
            );
            // `view` refuses before loading any model or opening a window.
            let args = ViewArgs {
                webcam: Some(crate::app::camera_choice::CameraSelector::Index(0)),
                model: ModelArgs {
                    model: Some("/nonexistent/model.onnx".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            assert_eq!(view(&args).unwrap_err().to_string(), message);
        }
    }
}
