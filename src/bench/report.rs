//! The figures `convlens bench` measured ([`BenchReport`]) and their human-readable table;
//! `--json` serialises the same struct.

use serde::Serialize;

/// The measured figures. `None` means "not measured" (see `notes`).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub input: String,
    /// The compute device (burn backend and adapter).
    pub device: String,
    /// The wgpu adapter the renderer used.
    pub render_device: Option<String>,
    /// The CPU and the kernels it runs ([`crate::engine::device::cpu_kernel_path`]).
    pub cpu_kernels: String,
    pub repeats: usize,
    pub warmup: usize,
    /// Forward pass keeping every layer's output, until the device is idle.
    pub forward_ms: f64,
    /// Inputs per pass of the batched forward measurement (`--batch`).
    pub batch: usize,
    /// One forward pass over `batch` different inputs, every layer kept (`None`: `--batch 1`
    /// or the model cannot be batched, see `notes`). Per image: this / `batch`.
    pub forward_batch_ms: Option<f64>,
    /// Throughput of that pass: `batch` / `forward_batch_ms`, in images per second.
    pub forward_batch_images_per_s: Option<f64>,
    /// With `--featvis`: seconds per filter of feature visualisation at 512 steps, amortised
    /// over a batch of filters of `featvis_layer` (measured at fewer steps and scaled, see
    /// `notes`), at the model's input size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub featvis_s_per_filter: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub featvis_layer: Option<String>,
    /// Guided backprop of every filter of every conv layer, images on the host.
    pub gbp_all_conv_s: Option<f64>,
    /// Filters (gradient images) in that workload.
    pub gbp_filters: usize,
    /// Conv layers in that workload.
    pub gbp_layers: usize,
    /// Process CPU time (user + system, all threads) of a gradient run, median; with the
    /// machine otherwise idle, wall time ≈ this / cores used (Linux only).
    pub gbp_cpu_s: Option<f64>,
    /// Timed gradient runs (1 when a run took longer than [`GBP_SINGLE_RUN_S`]).
    pub gbp_repeats: usize,
    /// One offscreen frame (prepare, draw, GPU done) of `tiles` tiles of `frame_layer`.
    pub frame_ms: Option<f64>,
    pub tiles: Option<usize>,
    pub frame_layer: Option<String>,
    pub viewport: [u32; 2],
    /// Input file → decode, preprocess → forward → every conv layer's tiles in the atlas.
    pub input_to_tiles_ms: Option<f64>,
    pub uploaded_tiles: Option<usize>,
    /// How the tiles reached the atlas in `input_to_tiles_ms`: `"zero-copy"` (burn shares
    /// the renderer's device; buffer-to-texture copies, only the ranges read back) or
    /// `"upload"` (maps read back to the CPU and written into the texture).
    pub atlas_fill: Option<String>,
    /// The atlas-fill part of `input_to_tiles_ms`: from the finished forward pass to every
    /// tile and range in the atlas.
    pub atlas_fill_ms: Option<f64>,
    /// With `"zero-copy"`: the same input → tiles through a readback and upload instead, on
    /// the same device in the same run, alternating with the zero-copy runs (the comparison
    /// of the two paths).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_to_tiles_upload_ms: Option<f64>,
    /// The atlas-fill part of `input_to_tiles_upload_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atlas_fill_upload_ms: Option<f64>,
    /// With `--ops`: the forward pass timed node by node, summed by op type, largest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forward_ops: Vec<OpTime>,
    /// With `--ops`: one more guided-backprop run of every conv filter, timed reverse step by
    /// reverse step (device synchronised after each), summed by op type, largest first;
    /// `nodes` counts steps (nodes × chunks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gbp_ops: Vec<OpTime>,
    /// Peak resident set of the process (Linux `VmHWM`).
    pub peak_rss_mib: Option<f64>,
    /// Most bytes burn's wgpu allocator held at the sampled points (GPU compute only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_pool_reserved_mib: Option<f64>,
    /// Size of the tile atlas texture after the input→tiles measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atlas_mib: Option<f64>,
    /// Open → first frame and scrolling frames of the architecture (flattened into the JSON;
    /// absent without a wgpu adapter).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub arch: Option<super::arch::ArchFigures>,
    pub notes: Vec<String>,
}

/// One op type's share of the forward pass (`--ops`).
#[derive(Debug, Clone, Serialize)]
pub struct OpTime {
    /// The op's type name (`Conv`, `ReLU`, …).
    pub op: String,
    /// Nodes of that type.
    pub nodes: usize,
    /// Sum of the nodes' median times.
    pub ms: f64,
}

/// The rows of an op-by-op breakdown: op name and count in columns `widths` wide, the time
/// in `unit` (`"ms"`, or `"s"` for the milliseconds divided by 1000) and its share of all.
fn op_rows(ops: &[OpTime], [name_w, count_w]: [usize; 2], count: &str, unit: &str) -> String {
    let total: f64 = ops.iter().map(|o| o.ms).sum();
    let scale = if unit == "s" { 1e-3 } else { 1.0 };
    ops.iter()
        .map(|o| {
            format!(
                "  {:<name_w$} {:>count_w$} {count}  {:>8.2} {unit}  {:>5.1}%\n",
                o.op,
                o.nodes,
                o.ms * scale,
                100.0 * o.ms / total.max(1e-9)
            )
        })
        .collect()
}

impl BenchReport {
    /// The human-readable report: an aligned table with units, then the notes.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("–".to_string(), figure);
        let n = |measured: bool, k: usize| {
            if measured {
                k.to_string()
            } else {
                String::new()
            }
        };
        let mut rows: Vec<[String; 5]> = vec![
            [
                "forward, every layer kept".into(),
                figure(self.forward_ms),
                "ms".into(),
                self.repeats.to_string(),
                String::new(),
            ],
            [
                "GBP, every conv filter".into(),
                ms(self.gbp_all_conv_s),
                "s".into(),
                n(self.gbp_all_conv_s.is_some(), self.gbp_repeats),
                format!(
                    "{} filters in {} conv layers, images on the host",
                    self.gbp_filters, self.gbp_layers
                ),
            ],
            [
                "GBP, process CPU time".into(),
                ms(self.gbp_cpu_s),
                "s".into(),
                n(self.gbp_cpu_s.is_some(), self.gbp_repeats),
                "user + system, all threads".into(),
            ],
            [
                "frame".into(),
                ms(self.frame_ms),
                "ms".into(),
                n(self.frame_ms.is_some(), self.repeats),
                match (self.tiles, &self.frame_layer) {
                    (Some(t), Some(l)) => format!(
                        "{t} tiles of {l}, {}x{} offscreen",
                        self.viewport[0], self.viewport[1]
                    ),
                    _ => String::new(),
                },
            ],
            [
                "input file → tiles".into(),
                ms(self.input_to_tiles_ms),
                "ms".into(),
                n(self.input_to_tiles_ms.is_some(), self.repeats),
                self.uploaded_tiles
                    .map(|t| {
                        format!(
                            "decode, preprocess, forward, {t} conv tiles + ranges in the atlas ({})",
                            self.atlas_fill.as_deref().unwrap_or("upload")
                        )
                    })
                    .unwrap_or_default(),
            ],
            [
                "peak RSS".into(),
                self.peak_rss_mib.map_or("–".into(), |v| format!("{v:.0}")),
                "MiB".into(),
                String::new(),
                "VmHWM of the whole process".into(),
            ],
        ];
        let mut extra = Vec::new();
        if let Some(v) = self.atlas_fill_ms {
            extra.push([
                "  of which atlas fill".into(),
                figure(v),
                "ms".into(),
                self.repeats.to_string(),
                "after the forward pass: maps + ranges into the atlas".into(),
            ]);
        }
        if let Some(v) = self.input_to_tiles_upload_ms {
            extra.push([
                "input file → tiles, upload".into(),
                figure(v),
                "ms".into(),
                self.repeats.to_string(),
                "the same through a readback and CPU upload, runs alternating".into(),
            ]);
        }
        if let Some(v) = self.atlas_fill_upload_ms {
            extra.push([
                "  of which atlas fill".into(),
                figure(v),
                "ms".into(),
                self.repeats.to_string(),
                "readback + queue.write_texture".into(),
            ]);
        }
        rows.splice(5..5, extra);
        if let Some(v) = self.forward_batch_ms {
            rows.insert(
                1,
                [
                    format!("forward per image, batch of {}", self.batch),
                    figure(v / self.batch.max(1) as f64),
                    "ms".into(),
                    self.repeats.to_string(),
                    format!(
                        "{} ms per pass of {} different inputs, every layer kept ({:.1} images/s)",
                        figure(v),
                        self.batch,
                        self.forward_batch_images_per_s.unwrap_or(f64::NAN)
                    ),
                ],
            );
        }
        if let (Some(v), Some(layer)) = (self.featvis_s_per_filter, &self.featvis_layer) {
            rows.push([
                "featvis per filter".into(),
                format!("{v:.2}"),
                "s".into(),
                "1".into(),
                format!("512 steps, filters of {layer} optimised together"),
            ]);
        }
        if let Some(v) = self.compute_pool_reserved_mib {
            rows.push([
                "burn wgpu pool, max reserved".into(),
                format!("{v:.0}"),
                "MiB".into(),
                String::new(),
                "sampled after forward and GBP".into(),
            ]);
        }
        if let Some(v) = self.atlas_mib {
            rows.push([
                "tile atlas texture".into(),
                format!("{v:.0}"),
                "MiB".into(),
                String::new(),
                "R32Float layers allocated".into(),
            ]);
        }
        let width = |k: usize| rows.iter().map(|r| r[k].chars().count()).max().unwrap_or(0);
        let (w0, w1, w2, w3) = (
            width(0).max(7),
            width(1).max(5),
            width(2).max(4),
            width(3).max(1),
        );
        let mut out = format!(
            "model   {}\ninput   {}\ndevice  {}\nrender  {}\ncpu     {}\n\n",
            self.model,
            self.input,
            self.device,
            self.render_device.as_deref().unwrap_or("none"),
            self.cpu_kernels
        );
        out += &format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {}\n",
            "measure", "value", "unit", "n", "what"
        );
        for r in &rows {
            let line = format!(
                "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {}",
                r[0], r[1], r[2], r[3], r[4]
            );
            out += line.trim_end();
            out.push('\n');
        }
        out += &format!(
            "\nmedians over n timed runs after {} warm-up run(s)\n",
            self.warmup
        );
        if !self.forward_ops.is_empty() {
            let total: f64 = self.forward_ops.iter().map(|o| o.ms).sum();
            out += &format!(
                "\nforward pass by op (device synchronised after each node, {total:.1} ms in all):\n"
            );
            out += &op_rows(&self.forward_ops, [16, 3], "nodes", "ms");
        }
        if !self.gbp_ops.is_empty() {
            let total: f64 = self.gbp_ops.iter().map(|o| o.ms).sum();
            out += &format!(
                "\nguided backprop by reverse op (one extra run, {:.2} s in all):\n",
                total / 1e3
            );
            out += &op_rows(&self.gbp_ops, [20, 5], "steps", "s");
        }
        if let Some(arch) = &self.arch {
            out.push('\n');
            out += &arch.table();
        }
        for note in &self.notes {
            out += &format!("note: {note}\n");
        }
        out
    }
}

/// A value with 3–4 significant digits (no more than the timer noise allows).
fn figure(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::FRAME_VIEWPORT;

    #[test]
    fn the_table_names_units_and_missing_figures() {
        let report = BenchReport {
            model: "m".into(),
            input: "i".into(),
            device: "cpu".into(),
            render_device: None,
            cpu_kernels: "x86_64 (avx2 fma)".into(),
            repeats: 3,
            warmup: 1,
            forward_ms: 12.34,
            batch: 4,
            forward_batch_ms: Some(40.0),
            forward_batch_images_per_s: Some(100.0),
            featvis_s_per_filter: None,
            featvis_layer: None,
            gbp_all_conv_s: None,
            gbp_filters: 72,
            gbp_layers: 3,
            gbp_cpu_s: None,
            gbp_repeats: 0,
            frame_ms: None,
            tiles: None,
            frame_layer: None,
            viewport: FRAME_VIEWPORT,
            input_to_tiles_ms: None,
            uploaded_tiles: None,
            atlas_fill: None,
            atlas_fill_ms: None,
            input_to_tiles_upload_ms: None,
            atlas_fill_upload_ms: None,
            forward_ops: Vec::new(),
            gbp_ops: Vec::new(),
            peak_rss_mib: Some(100.0),
            compute_pool_reserved_mib: None,
            atlas_mib: None,
            arch: None,
            notes: vec!["no adapter".into()],
        };
        let t = report.table();
        assert!(
            t.contains("12.3") && t.contains(" ms ") && t.contains("MiB"),
            "{t}"
        );
        assert!(t.contains("note: no adapter"), "{t}");
        assert!(
            t.contains("forward per image, batch of 4") && t.contains("10.0"),
            "{t}"
        );
        let json = serde_json::to_value(&report).expect("serialises");
        assert!(json["frame_ms"].is_null() && json.get("atlas_mib").is_none());
    }
}
