//! A viewing session's data: the model, its engine, the latest forward pass read back per
//! layer, and the step that puts the selected layer's maps (and the input picture) into the
//! renderer's tile atlas.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use image::RgbImage;

use crate::cli::LoadedModel;
use crate::engine::{self, Capture, ComputeDevice, Engine, HostTensor};
use crate::model::preprocess::{InputTensor, list_inputs, load_input};
use crate::render::{GpuContext, Renderer, TileHandle, value_range};
use crate::ui::ViewModel;
use crate::ui::scene::LayerTiles;

/// What one forward pass produced, on the CPU.
pub struct ForwardResult {
    /// First output of every layer with per-channel maps, by node index.
    pub maps: Vec<Option<HostTensor>>,
    pub probabilities: Vec<f32>,
    pub picture: Option<RgbImage>,
    pub label: String,
}

/// Runs the engine on one input and reads back every feature map.
pub fn run_forward(engine: &Engine, input: &InputTensor, label: String) -> Result<ForwardResult> {
    let graph = engine.graph();
    let acts = engine.forward(input, &Capture::All)?;
    let mut maps: Vec<Option<HostTensor>> = vec![None; graph.nodes.len()];
    for (i, node) in graph.feature_map_layers() {
        maps[i] = Some(acts.read(&node.outputs[0])?);
    }
    let probabilities = engine::class_probabilities(graph, &acts)?;
    Ok(ForwardResult { maps, probabilities, picture: input.picture.clone(), label })
}

/// Where inputs come from: one file, a folder stepped with the arrow keys, or the embedded photo.
#[derive(Debug, Clone)]
pub struct InputList {
    pub files: Vec<PathBuf>,
    pub current: usize,
}

impl InputList {
    /// A file gives a list of one; a folder lists its images sorted by name.
    pub fn from_path(path: &Path) -> Result<Self> {
        Ok(Self { files: list_inputs(path)?, current: 0 })
    }

    pub fn current(&self) -> Option<&Path> {
        self.files.get(self.current).map(PathBuf::as_path)
    }

    /// Moves by `step` (wrapping); returns the new current file.
    pub fn step(&mut self, step: isize) -> Option<&Path> {
        if self.files.is_empty() {
            return None;
        }
        let n = self.files.len() as isize;
        self.current = (self.current as isize + step).rem_euclid(n) as usize;
        self.current()
    }
}

/// The model side of the viewer.
pub struct Session {
    pub model: LoadedModel,
    pub engine: Arc<Engine>,
    pub vm: ViewModel,
    pub result: Option<ForwardResult>,
}

impl Session {
    pub fn new(model: LoadedModel, device: &ComputeDevice) -> Self {
        let engine = Arc::new(Engine::new(Arc::clone(&model.graph), device.device.clone()));
        let vm = ViewModel::from_graph(&model.graph, model.labels.clone(), device.description.clone());
        Self { model, engine, vm, result: None }
    }

    /// Loads and runs one input file synchronously.
    pub fn run_file(&mut self, path: Option<&Path>) -> Result<()> {
        let input = crate::cli::load_input_or_default(path, &self.model.spec)?;
        let label = path.map_or_else(|| "coffee.png (embedded)".to_string(), |p| p.display().to_string());
        let result = run_forward(&self.engine, &input, label)?;
        self.accept(result);
        Ok(())
    }

    /// Installs a finished forward pass.
    pub fn accept(&mut self, result: ForwardResult) {
        self.vm.probabilities = result.probabilities.clone();
        self.vm.input_label = result.label.clone();
        self.vm.notice = None;
        self.result = Some(result);
    }

    /// Loads an input file (for the worker).
    pub fn load(&self, path: &Path) -> Result<InputTensor> {
        Ok(load_input(path, &self.model.spec)?)
    }
}

/// Clears the atlas and uploads the input picture and every channel of `layer`.
pub fn upload_layer(renderer: &mut Renderer, ctx: &GpuContext, session: &Session, layer: usize) -> Result<(Option<TileHandle>, Option<LayerTiles>)> {
    renderer.atlas.clear();
    let Some(result) = &session.result else {
        return Ok((None, None));
    };
    let picture = match &result.picture {
        Some(p) => Some(renderer.atlas.upload_rgba8(&ctx.device, &ctx.queue, &image::DynamicImage::ImageRgb8(p.clone()).to_rgba8())?),
        None => None,
    };
    let Some(Some(map)) = result.maps.get(layer) else {
        return Ok((picture, None));
    };
    let [_, c, h, w] = <[usize; 4]>::try_from(map.shape.as_slice()).context("feature map is not [1, C, H, W]")?;
    let handles = renderer.atlas.upload_many(&ctx.device, &ctx.queue, &map.data, w as u32, h as u32, c as u32)?;
    let tiles = handles
        .into_iter()
        .enumerate()
        .map(|(k, handle)| (handle, value_range(&map.data[k * h * w..(k + 1) * h * w])))
        .collect();
    Ok((picture, Some(LayerTiles { layer, map_hw: [h, w], tiles })))
}
