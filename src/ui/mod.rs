//! Layout and interaction as plain data: the view model (what the network and the latest
//! forward pass say), the interaction state machine, the canvases' geometry, and the
//! scene builder that turns all of it into a [`crate::render::Scene`]. No GPU here.

pub mod arch_canvas;
pub mod blocks;
pub mod charts;
pub mod dataset;
pub mod frame;
pub mod layout;
pub mod levels;
pub mod model_shape;
pub mod needs;
pub mod palette;
pub mod scene;
pub mod side_canvas;
pub mod state;

use std::collections::HashMap;

use crate::format::architecture::Architecture;
use crate::model::Graph;

/// One layer as the views show it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInfo {
    pub name: String,
    pub type_name: String,
    pub output_shape: Vec<usize>,
    /// Indices of the layers this one reads (graph inputs and weights excluded).
    pub producers: Vec<usize>,
    /// Parameters as short `key: value` lines.
    pub params_text: String,
    pub is_conv: bool,
    /// Window geometry of a max/average pooling layer (its details show the window).
    pub pool: Option<PoolInfo>,
    /// Histogram of a fully connected layer's weight matrix (shown with its parameters).
    pub weights: Option<crate::viz::histogram::Histogram>,
}

/// A pooling layer's window, as the details canvas draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolInfo {
    /// "max" or "average".
    pub kind: &'static str,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    /// ceil_mode / count_include_pad, as a line of text (may be empty).
    pub extra: String,
    /// `[C, H, W]` of the input.
    pub input_chw: [usize; 3],
}

impl PoolInfo {
    /// From a layer's `params` as `architecture.json` writes them (data directories).
    fn from_params(
        type_name: &str,
        params: &serde_json::Value,
        input_shape: Option<&[usize]>,
    ) -> Option<Self> {
        let kind = match type_name {
            "MaxPool" => "max",
            "AvgPool" | "AveragePool" => "average",
            _ => return None,
        };
        let pair = |k: &str| -> Option<[usize; 2]> {
            let a = params.get(k)?.as_array()?;
            Some([a.first()?.as_u64()? as usize, a.get(1)?.as_u64()? as usize])
        };
        let pads = params
            .get("padding")
            .and_then(|p| p.as_array())
            .and_then(|a| {
                let v: Option<Vec<usize>> =
                    a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect();
                <[usize; 4]>::try_from(v?).ok()
            });
        let flag = |k: &str| params.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        let extra = match kind {
            "max" if flag("ceil_mode") => "ceil mode (partial windows at the end count)".into(),
            "max" => String::new(),
            _ => format!(
                "{}{}",
                if flag("count_include_pad") {
                    "padding counts in the mean"
                } else {
                    "padding excluded from the mean"
                },
                if flag("ceil_mode") { "; ceil mode" } else { "" }
            ),
        };
        let kernel = pair("kernel_size")?;
        // Sizes are drawn as grids of squares: keep them small and non-zero.
        if kernel.iter().any(|&k| k == 0 || k > 64) {
            return None;
        }
        Some(Self {
            kind,
            kernel,
            strides: pair("stride").unwrap_or([1, 1]).map(|s| s.clamp(1, 64)),
            pads: pads.unwrap_or([0; 4]).map(|p| p.min(64)),
            dilations: pair("dilation").unwrap_or([1, 1]).map(|d| d.clamp(1, 64)),
            extra,
            input_chw: match input_shape {
                Some([_, c, h, w]) => [*c, *h, *w],
                _ => [0, 0, 0],
            },
        })
    }
}

impl LayerInfo {
    /// `C×H×W` for feature maps, else the shape without the batch axis.
    pub fn size_label(&self) -> String {
        let s = match self.output_shape.as_slice() {
            [1, rest @ ..] if !rest.is_empty() => rest,
            all => all,
        };
        s.iter().map(usize::to_string).collect::<Vec<_>>().join("×")
    }

    /// `(C, H, W)` of a `[1, C, H, W]` output.
    pub fn map_dims(&self) -> Option<(usize, usize, usize)> {
        match self.output_shape.as_slice() {
            [1, c, h, w] => Some((*c, *h, *w)),
            _ => None,
        }
    }
}

/// How far a long computation of a layer's images has got (the occlusion sweep, which
/// computes every layer's maps at once), for the details canvas while its tiles are not
/// there yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub layer: usize,
    pub method: crate::format::Method,
    /// Passes done, of `total`.
    pub done: usize,
    pub total: usize,
}

/// Everything the views show about the model and the current input.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewModel {
    pub model_name: String,
    pub layers: Vec<LayerInfo>,
    /// Layers with per-channel maps, in order.
    pub map_layers: Vec<usize>,
    /// Class probabilities of the current input (empty before the first forward pass, and
    /// for models whose output is not a class vector).
    pub probabilities: Vec<f32>,
    /// For an output that is not a class vector: its shape and value range, shown in place
    /// of the class chart.
    pub output_summary: Option<String>,
    pub labels: Vec<String>,
    /// Where the current input came from.
    pub input_label: String,
    /// Compute device description.
    pub device: String,
    /// `[H, W]` of the model input (the size of gradient images).
    pub input_hw: [usize; 2],
    /// `[rows, cols]` of occlusion maps: the grid of the sweep that made them (set by the
    /// session from the sweep it runs, then from the results themselves).
    pub occlusion_hw: [usize; 2],
    /// A message for the user (errors, notices), shown in the side canvas; written only
    /// through [`ViewModel::set_notice`].
    notice: Option<String>,
    /// Per layer: filters by rank (mean activation on the current input, highest first);
    /// empty where unknown (data directories hold normalised tiles only).
    pub filter_rank: Vec<Vec<usize>>,
    /// The layer whose Grad-CAM explains a hovered class: the last one with spatial maps
    /// (None without a model to compute with).
    pub cam_layer: Option<usize>,
    /// The architecture's levels of blocks (see [`levels::LevelTree`]), for the collapsed
    /// architecture.
    pub levels: levels::LevelTree,
    /// The latest progress of a computation of a layer's images, if one reported any.
    pub progress: Option<Progress>,
    /// A dataset scan opened beside the model (`view --scan`): ranks, dead filters and top
    /// examples over a dataset.
    pub dataset: Option<dataset::DatasetView>,
}

impl ViewModel {
    /// The static part, from a model: its [`Architecture`] plus what only the weights give
    /// (fully connected layers' weight histograms, the Grad-CAM layer).
    pub fn from_graph(graph: &Graph, labels: Vec<String>, device: String) -> Self {
        Self::new(&Architecture::of(graph), Some(graph), labels, device)
    }

    /// The static part, from a data directory's `architecture.json` and `scores.json` (no
    /// model, no compute).
    pub fn from_data(data: &crate::format::read::DataDir) -> Self {
        let scores = &data.scores;
        let labels = if scores.labels.len() == scores.probabilities.len() {
            scores.labels.clone()
        } else {
            crate::model::default::labels_for(scores.probabilities.len())
        };
        Self::new(
            &data.architecture,
            None,
            labels,
            "none (data directory)".into(),
        )
    }

    /// The one constructor: the layer list from the architecture document (the same for a
    /// model and for its exported data directory); `graph`, when there is a model, adds
    /// weight histograms and the Grad-CAM layer.
    fn new(
        arch: &Architecture,
        graph: Option<&Graph>,
        labels: Vec<String>,
        device: String,
    ) -> Self {
        let index: HashMap<&str, usize> = arch
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), i))
            .collect();
        let input_shape = arch.input.as_ref().map(|i| i.shape.as_slice());
        let layers: Vec<LayerInfo> = arch
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let first_input = l.inputs.first().map(String::as_str);
                let pool_input = match first_input.and_then(|n| index.get(n)) {
                    Some(&p) => arch.layers.get(p).map(|p| p.output_shape.as_slice()),
                    None if first_input == arch.input.as_ref().map(|i| i.name.as_str()) => {
                        input_shape
                    }
                    None => None,
                };
                LayerInfo {
                    name: l.name.clone(),
                    type_name: l.type_name.clone(),
                    output_shape: l.output_shape.clone(),
                    producers: l
                        .inputs
                        .iter()
                        .filter_map(|n| index.get(n.as_str()).copied())
                        .filter(|&p| p < i)
                        .collect(),
                    params_text: params_text(&l.params),
                    is_conv: matches!(l.type_name.as_str(), "Conv" | "ConvTranspose"),
                    pool: PoolInfo::from_params(&l.type_name, &l.params, pool_input),
                    weights: graph
                        .and_then(|g| g.nodes.get(i).map(|n| (g, n)))
                        .and_then(|(g, n)| weight_histogram(g, n)),
                }
            })
            .collect();
        let map_layers: Vec<usize> = layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.map_dims().is_some())
            .map(|(i, _)| i)
            .collect();
        // Grad-CAM needs a model: the last layer with spatial maps larger than 1×1.
        let cam_layer = graph.and_then(|_| {
            map_layers
                .iter()
                .copied()
                .rfind(|&i| layers[i].map_dims().is_some_and(|(_, h, w)| h * w > 1))
        });
        Self {
            model_name: arch.name.clone(),
            layers,
            map_layers,
            probabilities: Vec::new(),
            output_summary: None,
            labels,
            input_label: String::new(),
            device,
            input_hw: match input_shape {
                Some([_, _, h, w]) => [*h, *w],
                _ => [1, 1],
            },
            occlusion_hw: [1, 1],
            notice: None,
            filter_rank: Vec::new(),
            cam_layer,
            levels: levels::LevelTree::default(),
            progress: None,
            dataset: None,
        }
        .with_levels()
    }

    /// The message shown to the user, if any.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// Shows `message` in the side canvas, replacing the previous one.
    pub fn notify(&mut self, message: impl Into<String>) {
        self.set_notice(Some(message.into()));
    }

    /// The one place a notice is written (or cleared with `None`).
    pub fn set_notice(&mut self, notice: Option<String>) {
        self.notice = notice;
    }

    /// Fills [`ViewModel::levels`] from the layer names and the graph.
    fn with_levels(mut self) -> Self {
        self.levels = levels::LevelTree::of(&self.layers);
        self
    }

    /// The order to show `layer`'s filters in when sorted by rank: the dataset scan's (mean
    /// over the dataset) where the scan has the layer, else the current input's; `true` when
    /// it is the dataset's. `None` where no rank is known.
    pub fn rank_order(&self, layer: usize) -> Option<(&[usize], bool)> {
        if let Some(l) = self.dataset.as_ref().and_then(|d| d.layer(layer)) {
            return Some((l.rank.as_slice(), true));
        }
        let order = self.filter_rank.get(layer)?;
        (!order.is_empty()).then_some((order.as_slice(), false))
    }

    /// The `k` most probable classes as `(index, probability)`.
    pub fn top_classes(&self, k: usize) -> Vec<(usize, f32)> {
        crate::viz::stats::top_k(&self.probabilities, k)
            .into_iter()
            .map(|i| (i, self.probabilities[i]))
            .collect()
    }

    pub fn label(&self, class: usize) -> String {
        self.labels
            .get(class)
            .cloned()
            .unwrap_or_else(|| format!("class {class}"))
    }
}

/// Histogram (48 bins) of a layer's weights: the matrix of a fully connected layer
/// (Gemm/MatMul with a constant 2-D operand) or the kernel of a convolution.
fn weight_histogram(
    graph: &Graph,
    node: &crate::model::Node,
) -> Option<crate::viz::histogram::Histogram> {
    use crate::model::Op;
    let rank = match node.op {
        Op::Gemm { .. } | Op::MatMul => 2,
        Op::Conv { .. } | Op::ConvTranspose { .. } => 4,
        _ => return None,
    };
    let w = node
        .inputs
        .iter()
        .filter_map(|i| graph.constants.get(i))
        .find(|c| c.shape.len() == rank && c.is_float())?;
    crate::viz::histogram::Histogram::of(&w.to_f32_vec(), 48)
}

/// Flattens a params JSON object into `key: value` lines.
fn params_text(params: &serde_json::Value) -> String {
    params
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
