//! Layout and interaction as plain data: the view model (what the network and the latest
//! forward pass say), the interaction state machine, the canvases' geometry, and the
//! scene builder that turns all of it into a [`crate::render::Scene`]. No GPU here.

pub mod arch_canvas;
pub mod blocks;
pub mod charts;
pub mod layout;
pub mod palette;
pub mod scene;
pub mod state;

use std::collections::HashMap;

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

    fn of(graph: &Graph, node: &crate::model::Node) -> Option<Self> {
        use crate::model::Op;
        let (kind, window, extra) = match &node.op {
            Op::MaxPool { window, ceil_mode } => (
                "max",
                window,
                if *ceil_mode {
                    "ceil mode (partial windows at the end count)".to_string()
                } else {
                    String::new()
                },
            ),
            Op::AveragePool {
                window,
                ceil_mode,
                count_include_pad,
            } => (
                "average",
                window,
                format!(
                    "{}{}",
                    if *count_include_pad {
                        "padding counts in the mean"
                    } else {
                        "padding excluded from the mean"
                    },
                    if *ceil_mode { "; ceil mode" } else { "" }
                ),
            ),
            _ => return None,
        };
        let input_chw = match node
            .inputs
            .first()
            .and_then(|i| graph.shapes.get(i))
            .map(Vec::as_slice)
        {
            Some([_, c, h, w]) => [*c, *h, *w],
            _ => [0, 0, 0],
        };
        Some(Self {
            kind,
            kernel: window.kernel,
            strides: window.strides,
            pads: [
                window.pads[0].0,
                window.pads[1].0,
                window.pads[0].1,
                window.pads[1].1,
            ],
            dilations: window.dilations,
            extra,
            input_chw,
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
    pub method: crate::export::Method,
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
    /// A message for the user (errors, notices), shown in the side canvas.
    pub notice: Option<String>,
    /// Per layer: filters by rank (mean activation on the current input, highest first);
    /// empty where unknown (data directories hold normalised tiles only).
    pub filter_rank: Vec<Vec<usize>>,
    /// The layer whose Grad-CAM explains a hovered class: the last one with spatial maps
    /// (None without a model to compute with).
    pub cam_layer: Option<usize>,
    /// Runs of consecutive layers of one block and their names (see [`blocks::blocks`]), for
    /// the collapsed architecture.
    pub groups: Vec<std::ops::Range<usize>>,
    /// The name of each of [`ViewModel::groups`].
    pub group_names: Vec<String>,
    /// The latest progress of a computation of a layer's images, if one reported any.
    pub progress: Option<Progress>,
}

impl ViewModel {
    /// The static part, from the graph.
    pub fn from_graph(graph: &Graph, labels: Vec<String>, device: String) -> Self {
        let producer: HashMap<&str, usize> = graph
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
            .collect();
        let layers = graph
            .nodes
            .iter()
            .map(|n| LayerInfo {
                name: n.name.clone(),
                type_name: n.op.type_name().to_string(),
                output_shape: n.output_shape().to_vec(),
                producers: n
                    .inputs
                    .iter()
                    .filter_map(|i| producer.get(i.as_str()).copied())
                    .collect(),
                params_text: params_text(&crate::export::architecture::params(graph, n)),
                is_conv: n.op.is_conv(),
                pool: PoolInfo::of(graph, n),
                weights: weight_histogram(graph, n),
            })
            .collect();
        Self {
            model_name: graph.name.clone(),
            layers,
            map_layers: graph.feature_map_layers().map(|(i, _)| i).collect(),
            probabilities: Vec::new(),
            output_summary: None,
            labels,
            input_label: String::new(),
            device,
            input_hw: match graph.image_input().map(|i| i.shape.as_slice()) {
                Some([_, _, h, w]) => [*h, *w],
                _ => [1, 1],
            },
            notice: None,
            filter_rank: Vec::new(),
            groups: Vec::new(),
            group_names: Vec::new(),
            cam_layer: graph
                .feature_map_layers()
                .filter(|(_, n)| n.feature_map_dims().is_some_and(|(_, h, w)| h * w > 1))
                .map(|(i, _)| i)
                .last(),
            progress: None,
        }
        .with_groups()
    }

    /// The static part, from a data directory's `architecture.json` (no model, no compute).
    pub fn from_data(data: &crate::datadir::DataDir) -> Self {
        let index: HashMap<&str, usize> = data
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.as_str(), i))
            .collect();
        let layers: Vec<LayerInfo> = data
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let input_shape = l
                    .inputs
                    .first()
                    .and_then(|n| index.get(n.as_str()))
                    .and_then(|&p| data.layers.get(p))
                    .map(|p| p.output_shape.clone())
                    .or_else(|| (i == 0).then(|| vec![1, 3, data.input_hw[0], data.input_hw[1]]));
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
                    pool: PoolInfo::from_params(&l.type_name, &l.params, input_shape.as_deref()),
                    weights: None,
                }
            })
            .collect();
        let map_layers = layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.map_dims().is_some())
            .map(|(i, _)| i)
            .collect();
        let labels = if data.labels.len() == data.probabilities.len() {
            data.labels.clone()
        } else {
            crate::model::default::labels_for(data.probabilities.len())
        };
        Self {
            model_name: data.name.clone(),
            layers,
            map_layers,
            probabilities: Vec::new(),
            output_summary: None,
            labels,
            input_label: String::new(),
            device: "none (data directory)".into(),
            input_hw: data.input_hw,
            notice: None,
            filter_rank: Vec::new(),
            cam_layer: None,
            groups: Vec::new(),
            group_names: Vec::new(),
            progress: None,
        }
        .with_groups()
    }

    /// Fills [`ViewModel::groups`] from the layer names.
    fn with_groups(mut self) -> Self {
        let blocks = blocks::blocks(&self.layers);
        self.groups = blocks.ranges;
        self.group_names = blocks.names;
        self
    }

    /// The `k` most probable classes as `(index, probability)`.
    pub fn top_classes(&self, k: usize) -> Vec<(usize, f32)> {
        crate::engine::top_k(&self.probabilities, k)
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
