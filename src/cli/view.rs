//! `convlens view` (the default command): its flags, and opening the viewer window or
//! rendering a `--screenshot`; `cameras` lists what `--webcam` can open.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::{ModelArgs, export, parse_arch_zoom, parse_hw, parse_ui_scale};
use crate::format::Method;

#[derive(Args, Debug, Default)]
pub struct ViewArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Input image, .npy tensor, or a folder of them (←/→ step through it). Default: the
    /// embedded coffee photo.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Render one frame offscreen to this PNG and exit (no display needed).
    #[arg(long, value_name = "OUT.png")]
    pub screenshot: Option<PathBuf>,
    /// Window (and screenshot) size WxH in pixels. (`--size` is the model input size.)
    #[arg(long, value_name = "WxH", value_parser = parse_hw, default_value = "1600x1000")]
    pub window_size: [usize; 2],
    /// Layer to select at start (default: the first convolution).
    #[arg(long)]
    pub layer: Option<String>,
    /// What the details canvas shows: forward, gbp, deconvnet, backprop, occlusion or
    /// featvis (feature visualisation) tiles, dataset examples (each filter's top-1 crop
    /// from `--scan`), the layer's gradcam (top class), or its params.
    #[arg(long, default_value = "forward")]
    pub method: String,
    /// Show filter N (from 1) of the selected layer as hovered (for screenshots).
    #[arg(long, value_name = "N")]
    pub hover: Option<usize>,
    /// Annotation file to load and save (default: one per model under the data directory,
    /// see `convlens annotations path`).
    #[arg(long, value_name = "FILE.json")]
    pub annotations: Option<PathBuf>,
    /// Folder of example images per class: `DIR/<label>/…`, `DIR/<class index>/…` or
    /// `DIR/<label>.jpg`; the example of a hovered class is shown beside its Grad-CAM.
    #[arg(long, value_name = "DIR")]
    pub examples: Option<PathBuf>,
    /// Screenshot scale: physical pixels per layout pixel (2 renders as on a HiDPI display).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_ui_scale)]
    pub ui_scale: f32,
    /// Show the tiles sorted by filter rank (mean activation on the input, highest first).
    #[arg(long)]
    pub sort_by_rank: bool,
    /// How gradient tiles are scaled: robust (default: 0 at mid-grey, ±1 at the 98%
    /// cumulative-|g| threshold, outliers clipped, as Captum) or minmax (the paper's). N
    /// toggles it in the window.
    #[arg(long, value_name = "robust|minmax", default_value = "robust", value_parser = export::parse_norm)]
    pub normalize: crate::viz::gradient_norm::GradientNorm,
    /// Show one architecture node per block of layers (G toggles it in the window).
    #[arg(long)]
    pub collapse_blocks: bool,
    /// Size of the architecture's nodes: 1 = the paper's 7 per row, 0.5 = 14 smaller ones
    /// per row, down to 0.25 ([ and ] or Ctrl+wheel over the architecture in the window).
    #[arg(long, value_name = "F", default_value_t = 1.0, value_parser = parse_arch_zoom)]
    pub arch_zoom: f32,
    /// Open a data directory written by `convlens export` (or any program following its
    /// format) instead of running a model.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["model", "input"])]
    pub data: Option<PathBuf>,
    /// A dataset scan of the model (`convlens scan … --out DIR`): hovering a filter shows its
    /// top dataset examples, `--method examples` shows each filter's top-1 crop, and rank
    /// order and dead-filter suggestions come from the dataset. With `--data`, a scan inside
    /// the data directory (`DIR/scan/`, or any subfolder with a scan.json) opens by itself.
    #[arg(long, value_name = "SCAN_DIR")]
    pub scan: Option<PathBuf>,
    /// Optimisation steps of the "feature vis" method (Lucid's recipe; 512 as `convlens
    /// featvis`, whose results it shares through the cache). Fewer give a rougher picture
    /// sooner.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub featvis_steps: u32,
    /// Live input from camera N, or the camera whose name contains NAME (`convlens cameras`
    /// lists them; default 0): every frame the model has time for updates the tiles. Needs
    /// a build with `--features webcam`. Give MODEL before it (`view model.onnx --webcam`),
    /// or N (`--webcam 0 model.onnx`).
    #[arg(
        long,
        value_name = "N|NAME",
        num_args = 0..=1,
        default_missing_value = "0",
        value_parser = crate::app::camera_choice::parse_selector,
        conflicts_with_all = ["input", "data", "screenshot"]
    )]
    pub webcam: Option<crate::app::camera_choice::CameraSelector>,
    /// The camera's frame size (its highest frame rate at that size); default: its highest
    /// frame rate at any size.
    #[arg(long, value_name = "WxH", value_parser = parse_hw, requires = "webcam")]
    pub webcam_size: Option<[usize; 2]>,
}

/// `--webcam` needs a build with the `webcam` cargo feature; without it, say how to get one.
pub(super) fn check_webcam_support(webcam: bool) -> Result<()> {
    if webcam && !cfg!(feature = "webcam") {
        bail!("{}", crate::app::NO_WEBCAM_SUPPORT);
    }
    Ok(())
}

/// `convlens cameras`: the cameras `view --webcam` can open.
pub fn cameras() -> Result<()> {
    check_webcam_support(true)?;
    #[cfg(feature = "webcam")]
    {
        let cameras = crate::app::webcam::list_cameras()?;
        print!("{}", crate::app::camera_choice::listing_text(&cameras));
    }
    Ok(())
}

/// `convlens view`: the window, or one offscreen frame with `--screenshot`.
pub fn view(args: &ViewArgs) -> Result<()> {
    use crate::ui::state::Panel;
    check_webcam_support(args.webcam.is_some())?;
    let (method, panel) = match args.method.trim() {
        "gradcam" => (Method::Forward, Panel::GradCam),
        "params" | "parameters" => (Method::Forward, Panel::Params),
        "examples" | "dataset" => (Method::Forward, Panel::DatasetExamples),
        m => match Method::parse_list(m).ok().as_deref() {
            Some([m]) => (*m, Panel::Tiles),
            _ => bail!(
                "--method takes one of forward, gbp, deconvnet, backprop, occlusion, featvis, examples, gradcam, params"
            ),
        },
    };
    let source = match &args.data {
        Some(dir) => {
            crate::app::ViewSource::Data(Box::new(crate::format::read::DataDir::open(dir)?))
        }
        None => crate::app::ViewSource::Model(args.model.load()?),
    };
    let options = crate::app::ViewerOptions {
        input: args.input.clone(),
        webcam: args
            .webcam
            .clone()
            .map(|camera| crate::app::camera_choice::WebcamRequest {
                camera,
                size_px: args.webcam_size.map(|[w, h]| [w as u32, h as u32]),
            }),
        layer: args.layer.clone(),
        hover: args.hover,
        method,
        window_px: [args.window_size[0] as u32, args.window_size[1] as u32],
        annotations: args.annotations.clone(),
        device: args.model.device,
        sort_by_rank: args.sort_by_rank,
        gradient_norm: args.normalize,
        collapse_blocks: args.collapse_blocks,
        arch_zoom: args.arch_zoom,
        ui_scale: args.ui_scale,
        panel,
        examples: args.examples.clone(),
        scan: args.scan.clone(),
        featvis_steps: (args.featvis_steps > 0).then_some(args.featvis_steps as usize),
    };
    match &args.screenshot {
        Some(out) => crate::app::screenshot(source, &options, out),
        None => crate::app::run_window(source, options),
    }
}
