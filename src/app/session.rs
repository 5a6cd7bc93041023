//! A viewing session's data: the model and its engine (or a data directory read from disk),
//! the latest forward pass read back per layer, the gradients and Grad-CAMs computed for it,
//! and the filter annotations. [`super::upload`] puts what it holds into the tile atlas.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use image::RgbImage;

use super::compute::{
    CamResult, ComputeOptions, ForwardResult, GradientChunk, GradientResult, compute_cam,
    compute_gradients, run_forward,
};
use super::fallback::{Fallback, compute_with_fallback};
use crate::annotations::{self, AnnotationStore};
use crate::engine::methods::featvis::FeatvisSpec;
use crate::engine::{ComputeDevice, Engine};
use crate::format::Method;
use crate::format::read::DataDir;
use crate::model::LoadedModel;
use crate::model::preprocess::{InputTensor, list_inputs, load_input};
use crate::ui::ViewModel;
use crate::ui::needs::Need;

/// Where inputs come from: one file, a folder stepped with the arrow keys, or the embedded photo.
#[derive(Debug, Clone)]
pub struct InputList {
    pub files: Vec<PathBuf>,
    pub current: usize,
}

impl InputList {
    /// A file gives a list of one; a folder lists its images sorted by name.
    pub fn from_path(path: &Path) -> Result<Self> {
        Ok(Self {
            files: list_inputs(path)?,
            current: 0,
        })
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

/// A small cache of results, newest last: `item` replaces the entry with its key, and the
/// oldest entries go beyond `cap`.
fn keep_newest<T, K: PartialEq>(list: &mut Vec<T>, item: T, key: impl Fn(&T) -> K, cap: usize) {
    let k = key(&item);
    list.retain(|x| key(x) != k);
    list.push(item);
    if list.len() > cap {
        list.drain(..list.len() - cap);
    }
}

/// Host memory the per-filter images of the current input may hold together (f32 values of
/// complete results; a layer being computed is never dropped). One deep layer's guided
/// backprop can be large: EfficientNet-Lite0's `/_conv_head/Conv`, 1280 × 3 × 224 × 224,
/// is 770 MB.
pub const GRADIENT_CACHE_BYTES: usize = 1 << 30;

/// Drops the oldest complete results while the list holds more than `budget` bytes of images
/// (the newest result always stays).
fn evict_over_budget(list: &mut Vec<GradientResult>, budget: usize) {
    let bytes = |g: &GradientResult| g.images.data.len() * std::mem::size_of::<f32>();
    let mut total: usize = list.iter().map(bytes).sum();
    let mut i = 0;
    while total > budget && i + 1 < list.len() {
        if list[i].is_complete() {
            total -= bytes(&list[i]);
            list.remove(i);
        } else {
            i += 1;
        }
    }
}

/// Shown for models without any `[1, C, H, W]` layer.
const NO_MAPS_NOTICE: &str = "This model has no layers with per-channel maps [1, C, H, W], so \
     there are no filter tiles; the architecture, parameters and outputs are shown.";

/// The model side of the viewer.
pub struct Session {
    /// Where the results come from: a model the engine runs, or a data directory.
    pub source: Source,
    /// Name and fingerprint that key the annotation file.
    identity: (String, String),
    pub vm: ViewModel,
    pub result: Option<ForwardResult>,
    /// Gradient images computed for the current input, newest last.
    pub gradients: Vec<GradientResult>,
    /// The user's filter marks, saved on every change.
    pub annotations: AnnotationStore,
    /// Whether `engine` computes on a GPU (a failure there falls back to the CPU).
    pub on_gpu: bool,
    /// Grad-CAM maps of classes computed for the current input.
    pub cams: Vec<CamResult>,
    /// Example images per class (`--examples`).
    pub examples: super::examples::Examples,
    /// A dataset scan of the model (`--scan`), its crops read as shown.
    pub scan: Option<super::scan_source::ScanSource>,
    /// How per-filter images are computed (feature vis recipe and cache).
    pub compute_options: ComputeOptions,
}

/// The viewer's way of computing per-filter images for `model`: Lucid's feature vis recipe
/// for its preprocessing, kept in the user's cache; 16 filters per pass on a GPU, 4 on the
/// CPU (the first tiles come sooner, and a CPU gains little from larger batches).
fn viewer_compute_options(model: &LoadedModel, on_gpu: bool) -> ComputeOptions {
    let mut options = ComputeOptions::default();
    let featvis = &mut options.featvis;
    featvis.spec = FeatvisSpec::lucid(model.spec.mean, model.spec.std);
    featvis.spec.batch = if on_gpu { 16 } else { 4 };
    featvis.cache_root = crate::engine::methods::featvis::cache::default_root();
    featvis.fingerprint = model.graph.fingerprint.clone();
    options
}

/// The grid of the viewer's own occlusion sweep (`compute::occlusion_chunks`) over an
/// `input_hw` input, until results give theirs.
fn default_occlusion_hw(input_hw: [usize; 2]) -> [usize; 2] {
    crate::engine::methods::occlusion::OcclusionSpec::for_input(input_hw).grid_hw(input_hw)
}

/// Where a session's results come from. (A webcam is an input of a model session, not a
/// source of its own: its frames go through the same engine.)
pub enum Source {
    /// A model the engine runs (the engine may be swapped for a CPU one after a GPU failure).
    Model {
        model: LoadedModel,
        engine: Arc<Engine>,
    },
    /// A data directory written by `export` (`view --data DIR`): results to show, no compute.
    Data(Box<DataDir>),
}

impl Session {
    /// The model, in a model session.
    pub fn model(&self) -> Option<&LoadedModel> {
        match &self.source {
            Source::Model { model, .. } => Some(model),
            Source::Data(_) => None,
        }
    }

    /// The engine, in a model session.
    pub fn engine(&self) -> Option<&Arc<Engine>> {
        match &self.source {
            Source::Model { engine, .. } => Some(engine),
            Source::Data(_) => None,
        }
    }

    /// Computes what the view needs, synchronously (the screenshot path; the window hands
    /// the same needs to its worker instead).
    pub fn fulfil(&mut self, need: Need) -> Result<()> {
        match need {
            Need::FilterImages { layer, method } => self.ensure_gradients(layer, method),
            Need::Cam { layer, class } => self.ensure_cam(layer, class),
        }
    }

    pub fn new(model: LoadedModel, device: &ComputeDevice) -> Self {
        let engine = Arc::new(Engine::new(Arc::clone(&model.graph), device.device.clone()));
        let mut vm = ViewModel::from_graph(
            &model.graph,
            model.labels.clone(),
            device.description.clone(),
        );
        vm.occlusion_hw = default_occlusion_hw(vm.input_hw);
        if vm.map_layers.is_empty() {
            vm.notify(NO_MAPS_NOTICE);
        }
        let identity = (model.graph.name.clone(), model.graph.fingerprint.clone());
        let annotations = AnnotationStore::in_memory(&identity.0, &identity.1);
        let compute_options = viewer_compute_options(&model, device.is_gpu);
        Self {
            source: Source::Model { model, engine },
            identity,
            vm,
            result: None,
            gradients: Vec::new(),
            annotations,
            on_gpu: device.is_gpu,
            cams: Vec::new(),
            examples: Default::default(),
            scan: None,
            compute_options,
        }
    }

    /// Feature visualisations with `steps` optimisation steps instead of Lucid's 512.
    pub fn set_featvis_steps(&mut self, steps: usize) {
        self.compute_options.featvis.spec.steps = steps.max(1);
    }

    /// A session over a data directory: its layers, scores and input picture; tiles are read
    /// per layer when shown ([`Session::ensure_layer`]).
    pub fn from_data(data: DataDir) -> Self {
        let mut vm = ViewModel::from_data(&data);
        vm.occlusion_hw = default_occlusion_hw(vm.input_hw);
        if vm.map_layers.is_empty() {
            vm.notify(NO_MAPS_NOTICE);
        } else if !data.warnings.is_empty() {
            vm.notify(data.warnings.join("; "));
        }
        vm.probabilities = data.scores.probabilities.clone();
        vm.input_label = format!("data: {}", data.root.display());
        let identity = (data.architecture.name.clone(), data.fingerprint.clone());
        let annotations = AnnotationStore::in_memory(&identity.0, &identity.1);
        let result = ForwardResult {
            maps: (0..data.architecture.layers.len()).map(|_| None).collect(),
            probabilities: data.scores.probabilities.clone(),
            output_summary: None,
            picture: data.picture.clone(),
            label: vm.input_label.clone(),
            input: None,
            constant_channels: vec![Vec::new(); data.architecture.layers.len()],
            rank_order: vec![Vec::new(); data.architecture.layers.len()],
            tile_ranges: vec![Vec::new(); data.architecture.layers.len()],
            device_maps: vec![None; data.architecture.layers.len()],
        };
        Self {
            source: Source::Data(Box::new(data)),
            identity,
            vm,
            result: Some(result),
            gradients: Vec::new(),
            annotations,
            on_gpu: false,
            cams: Vec::new(),
            examples: Default::default(),
            scan: None,
            compute_options: ComputeOptions::default(),
        }
    }

    /// For a data directory: reads `layer`'s tiles under `method` if not read yet (a notice
    /// says what was missing). Nothing to do for a model session.
    pub fn ensure_layer(&mut self, layer: usize, method: Method) {
        let Source::Data(data) = &self.source else {
            return;
        };
        let have = if method == Method::Forward {
            self.result
                .as_ref()
                .and_then(|r| r.maps.get(layer))
                .is_some_and(Option::is_some)
        } else {
            self.gradient(layer, method).is_some()
        };
        if have
            || data
                .architecture
                .layers
                .get(layer)
                .and_then(|l| l.map_dims())
                .is_none()
        {
            return;
        }
        match data.layer_images(layer, method) {
            Ok(Some(images)) => {
                self.vm
                    .set_notice((!images.problems.is_empty()).then(|| images.problems.join("; ")));
                if method == Method::Forward {
                    if let Some(slot) = self.result.as_mut().and_then(|r| r.maps.get_mut(layer)) {
                        *slot = Some(images.tensor.into());
                    }
                } else {
                    self.accept_gradients(GradientResult::complete(layer, method, images.tensor));
                }
            }
            Ok(None) => {
                self.vm.notify(format!(
                    "this data directory has no {} images for this layer",
                    method.dir_name()
                ));
            }
            Err(e) => self.vm.notify(e.to_string()),
        }
    }

    /// Opens the annotation file (`path`, else the model's default location). When it
    /// cannot be used, marks are kept for this session only and the notice says why.
    pub fn open_annotations(&mut self, path: Option<&Path>) {
        let (name, fingerprint) = &self.identity;
        let opened = match path {
            Some(p) => AnnotationStore::open(p, name, fingerprint),
            None => annotations::default_path(name, fingerprint)
                .and_then(|p| AnnotationStore::open(&p, name, fingerprint)),
        };
        match opened {
            Ok(store) => self.annotations = store,
            Err(e) => {
                self.vm
                    .notify(format!("annotations are not saved this session: {e}"));
            }
        }
    }

    /// Applies a mark from the UI: saved at once; a failure becomes the notice.
    pub fn annotate(&mut self, layer: usize, filter: usize, mark: Option<annotations::Mark>) {
        let Some(name) = self.vm.layers.get(layer).map(|l| l.name.clone()) else {
            return;
        };
        if let Err(e) = self.annotations.set(&name, filter, mark) {
            self.vm.notify(format!("{e}"));
        }
    }

    /// Marks the selected layer's constant filters bad (those without a mark yet); returns
    /// how many were marked.
    pub fn accept_dead_suggestions(&mut self, layer: usize) -> usize {
        let Some(name) = self.vm.layers.get(layer).map(|l| l.name.clone()) else {
            return 0;
        };
        let marks: Vec<_> = self
            .suggested_bad(layer)
            .into_iter()
            .map(|k| (name.clone(), k, Some(annotations::Mark::Bad)))
            .collect();
        match self.annotations.set_many(&marks) {
            Ok(n) => n,
            Err(e) => {
                self.vm.notify(format!("{e}"));
                0
            }
        }
    }

    /// Unmarked filters of `layer` suggested bad: never positive over the open dataset scan
    /// where it has the layer, else constant on the current input.
    pub fn suggested_bad(&self, layer: usize) -> Vec<usize> {
        let Some(info) = self.vm.layers.get(layer) else {
            return Vec::new();
        };
        let candidates = match self.dataset_dead(layer) {
            Some(dead) => dead,
            None => (self.result.as_ref())
                .and_then(|r| r.constant_channels.get(layer))
                .map_or(&[][..], Vec::as_slice),
        };
        (candidates.iter().copied())
            .filter(|&k| self.annotations.annotations.mark(&info.name, k).is_none())
            .collect()
    }

    /// The model's name and fingerprint (what annotation files and scans are keyed by).
    pub fn identity(&self) -> (&str, &str) {
        (&self.identity.0, &self.identity.1)
    }

    /// Loads and runs one input file synchronously.
    pub fn run_file(&mut self, path: Option<&Path>) -> Result<()> {
        let Some(model) = self.model() else {
            anyhow::ensure!(
                path.is_none(),
                "a data directory holds the results of one input; open the model to run others"
            );
            return Ok(());
        };
        let input = crate::model::default::input_or_default(path, &model.spec)?;
        let label = path.map_or_else(
            || "coffee.png (embedded)".to_string(),
            |p| p.display().to_string(),
        );
        self.compute(
            |engine| run_forward(engine, &input, label.clone()),
            Self::accept,
        )
    }

    /// Runs `work` on the engine — again on a CPU engine if it fails on the GPU — hands the
    /// result to `accept`, then switches to the CPU engine if that happened (after `accept`,
    /// so the notice about the switch is the one shown).
    fn compute<T>(
        &mut self,
        work: impl FnMut(&Engine) -> Result<T>,
        accept: impl FnOnce(&mut Self, T),
    ) -> Result<()> {
        let engine = self.engine().cloned().context("no model to compute with")?;
        let (result, fallback) = compute_with_fallback(&engine, self.on_gpu, work);
        accept(self, result?);
        if let Some(f) = fallback {
            self.switch_to(f);
        }
        Ok(())
    }

    /// Computes on the CPU engine a failed GPU pass switched to, from now on.
    pub fn switch_to(&mut self, fallback: Fallback) {
        self.vm.device = fallback.device_label();
        self.vm.notify(fallback.notice());
        if let Source::Model { engine, .. } = &mut self.source {
            *engine = fallback.engine;
        }
        self.on_gpu = false;
    }

    /// Installs a finished forward pass.
    pub fn accept(&mut self, result: ForwardResult) {
        self.vm.probabilities = result.probabilities.clone();
        self.vm.output_summary = result.output_summary.clone();
        self.vm.filter_rank = result.rank_order.clone();
        self.vm.input_label = result.label.clone();
        self.vm.progress = None;
        let notice = self.vm.map_layers.is_empty().then(|| NO_MAPS_NOTICE.into());
        self.vm.set_notice(notice);
        self.result = Some(result);
        // Feature visualisations do not depend on the input: they stay.
        self.gradients.retain(|g| !g.method.depends_on_input());
        self.cams.clear();
    }

    /// Keeps per-filter images for the current input: at most [`GRADIENT_CACHE_BYTES`] (and
    /// 512 layers: an occlusion sweep delivers every layer's small maps), the oldest complete
    /// ones dropped first.
    pub fn accept_gradients(&mut self, g: GradientResult) {
        self.note_tile_size(&g);
        keep_newest(&mut self.gradients, g, |x| (x.layer, x.method), 512);
        evict_over_budget(&mut self.gradients, GRADIENT_CACHE_BYTES);
    }

    /// Tile sizes come from the results: occlusion maps tell the view their grid (an export
    /// made with `--occlusion-size` has another one than the viewer's default sweep).
    fn note_tile_size(&mut self, g: &GradientResult) {
        if g.method == Method::Occlusion
            && let [_, _, rows, cols] = g.images.shape.as_slice()
            && rows * cols > 0
        {
            self.vm.occlusion_hw = [*rows, *cols];
        }
    }

    /// Puts a chunk of per-filter images in place (starting the layer's result with its
    /// first chunk). Chunks computed for another input than the current one are dropped.
    /// Returns whether anything changed.
    pub fn accept_chunk(&mut self, chunk: GradientChunk) -> bool {
        let current = self.result.as_ref().and_then(|r| r.input.as_ref());
        let for_current = current.is_some_and(|input| Arc::ptr_eq(input, &chunk.input));
        if !for_current && chunk.method.depends_on_input() {
            return false;
        }
        let key = (chunk.layer, chunk.method);
        if !self.gradients.iter().any(|g| (g.layer, g.method) == key) {
            self.accept_gradients(chunk.empty_result());
        }
        self.gradients
            .iter_mut()
            .find(|g| (g.layer, g.method) == key)
            .is_some_and(|g| g.accept_chunk(&chunk))
    }

    /// The images of `layer` under `method`: complete, arriving, or stopped part-way.
    pub fn gradient(&self, layer: usize, method: Method) -> Option<&GradientResult> {
        self.gradients
            .iter()
            .find(|g| (g.layer, g.method) == (layer, method))
    }

    /// Computes the gradient images of `layer` synchronously (screenshots).
    pub fn ensure_gradients(&mut self, layer: usize, method: Method) -> Result<()> {
        if matches!(self.source, Source::Data(_)) {
            self.ensure_layer(layer, method);
            return Ok(());
        }
        if method == Method::Forward || self.gradient(layer, method).is_some() {
            return Ok(());
        }
        let input = self
            .result
            .as_ref()
            .and_then(|r| r.input.clone())
            .context("no input has been run yet")?;
        let options = self.compute_options.clone();
        self.compute(
            |engine| compute_gradients(engine, &input, (layer, method), &options),
            Self::accept_gradients,
        )
    }

    /// The Grad-CAM map of `class` for the current input, if computed.
    pub fn cam(&self, layer: usize, class: usize) -> Option<&CamResult> {
        self.cams
            .iter()
            .find(|c| (c.layer, c.class) == (layer, class))
    }

    /// Keeps a Grad-CAM map (the last few classes).
    pub fn accept_cam(&mut self, cam: CamResult) {
        keep_newest(&mut self.cams, cam, |c| (c.layer, c.class), 16);
    }

    /// Computes the Grad-CAM map of `class` synchronously (screenshots). Nothing to do
    /// without a model.
    pub fn ensure_cam(&mut self, layer: usize, class: usize) -> Result<()> {
        let (Some(_), Some(input)) = (
            self.engine(),
            self.result.as_ref().and_then(|r| r.input.clone()),
        ) else {
            return Ok(());
        };
        if self.cam(layer, class).is_some() {
            return Ok(());
        }
        self.compute(
            |engine| compute_cam(engine, &input, layer, class),
            Self::accept_cam,
        )
    }

    /// The input picture with the Grad-CAM map of `class` over it, and a caption.
    pub fn cam_picture(&self, layer: usize, class: usize) -> Option<(RgbImage, String)> {
        let cam = self.cam(layer, class)?;
        let picture = self.result.as_ref()?.picture.as_ref()?;
        let hw = match cam.cam.shape.as_slice() {
            [h, w] => [*h, *w],
            _ => return None,
        };
        Some((
            crate::viz::overlay::heat_over(picture, &cam.cam.data, hw, 0.45),
            format!("Grad-CAM of {}", self.vm.label(class)),
        ))
    }

    /// The example image of the class hovered in a chart, if `--examples` has one.
    pub fn hovered_example(&mut self, state: &crate::ui::state::ViewState) -> Option<RgbImage> {
        let class = crate::ui::charts::hovered_class(&self.vm, state)?;
        let label = self.vm.label(class);
        self.examples.get(class, &label).cloned()
    }

    /// Loads an input file (for the worker).
    pub fn load(&self, path: &Path) -> Result<InputTensor> {
        let model = self.model().context("no model to prepare inputs for")?;
        Ok(load_input(path, &model.spec)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HostTensor;

    fn result(layer: usize, channels: usize, filled: usize) -> GradientResult {
        GradientResult {
            layer,
            method: Method::Guided,
            images: HostTensor {
                shape: vec![channels, 1, 1, 1],
                data: vec![0.0; channels],
            },
            filled,
        }
    }

    #[test]
    fn the_image_cache_drops_the_oldest_complete_results_over_its_budget() {
        // Budget 40 bytes = 10 values. Layers 0 (4 values, complete), 1 (4, still arriving),
        // 2 (4, complete), then 3 (6, complete): 18 values, so the oldest complete ones go
        // until 10 remain; the one still arriving stays.
        let mut list = vec![
            result(0, 4, 4),
            result(1, 4, 2),
            result(2, 4, 4),
            result(3, 6, 6),
        ];
        evict_over_budget(&mut list, 40);
        let layers: Vec<usize> = list.iter().map(|g| g.layer).collect();
        assert_eq!(layers, [1, 3]);
        // The newest stays even when it alone is over the budget.
        let mut list = vec![result(0, 4, 4), result(5, 100, 100)];
        evict_over_budget(&mut list, 40);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].layer, 5);
    }

    #[test]
    fn the_result_cache_replaces_by_key_and_drops_the_oldest() {
        let mut list = Vec::new();
        for (k, v) in [(1, 'a'), (2, 'b'), (3, 'c'), (2, 'd'), (4, 'e')] {
            keep_newest(&mut list, (k, v), |x: &(i32, char)| x.0, 3);
        }
        assert_eq!(list, vec![(3, 'c'), (2, 'd'), (4, 'e')]);
    }
}
