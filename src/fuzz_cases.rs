//! What the fuzz targets in `fuzz/` do with their bytes, for the parsers whose input is a
//! folder rather than one buffer, shared with `tests/fuzz_regressions.rs` so the kept
//! findings replay exactly as the fuzzer ran them. Not part of the API.

use std::path::Path;

use crate::scan::open::OpenScan;
use crate::ui::dataset::DatasetView;

/// `scan_reader`: byte 0 picks. Odd: the rest is a `checkpoint.json` for
/// [`crate::scan::checkpoint::check_checkpoint_bytes`]. Even: the rest is split at `0xFF 0x00`
/// pairs into `scan.json`, `stats.csv`, `topk.json` and a PNG written as the crop of rank 1
/// of filter 1 of the first layer (under its stem when the JSON gives a plain one), in
/// `scratch` (emptied first); then [`OpenScan::open`], the viewer's [`DatasetView`] and a
/// crop of each matched layer's first filter. `Ok(true)` when the input was accepted,
/// `Ok(false)` when it was refused with a message, `Err` for misbehaviour (a refusal without
/// a message, an inconsistent result); a panic is the caller's to catch.
pub fn scan_reader(data: &[u8], scratch: &Path) -> Result<bool, String> {
    let Some((&mode, rest)) = data.split_first() else {
        return Ok(false);
    };
    if mode % 2 == 1 {
        return refused_cleanly(crate::scan::checkpoint::check_checkpoint_bytes(rest));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i + 1 < rest.len() && parts.len() < 3 {
        if rest[i] == 0xFF && rest[i + 1] == 0x00 {
            parts.push(&rest[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    parts.push(rest.get(start..).unwrap_or_default());
    let part = |k: usize| parts.get(k).copied().unwrap_or_default();
    let io = |e: std::io::Error| format!("scratch folder: {e}");
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).map_err(io)?;
    for (name, k) in [("scan.json", 0), ("stats.csv", 1), ("topk.json", 2)] {
        std::fs::write(scratch.join(name), part(k)).map_err(io)?;
    }
    let stem = serde_json::from_slice::<serde_json::Value>(part(0))
        .ok()
        .and_then(|v| v.pointer("/layers/0/stem")?.as_str().map(str::to_string))
        .filter(|s| {
            !s.is_empty()
                && s.len() < 100
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .unwrap_or_else(|| "conv1".into());
    let examples = scratch.join("examples").join(&stem);
    std::fs::create_dir_all(&examples).map_err(io)?;
    std::fs::write(examples.join("1_1.png"), part(3)).map_err(io)?;
    let scan = match OpenScan::open(scratch) {
        Ok(scan) => scan,
        Err(e) => return refused_cleanly(Err::<(), _>(e)),
    };
    // The model's layers as the viewer passes them: the scan's own, and one it lacks.
    let layers: Vec<(String, Option<usize>)> = (scan.manifest.layers.iter())
        .map(|l| (l.name.clone(), Some(l.shape[0])))
        .chain([("not scanned".to_string(), None)])
        .collect();
    let (view, _notes) = DatasetView::new(&scan, layers.iter().map(|(n, c)| (n.as_str(), *c)));
    for layer in view.layers.iter().flatten().take(8) {
        if layer.rank.len() != layer.top.len() {
            return Err("a layer's rank and top lists differ in length".into());
        }
        let _ = scan.crop(layer.scan_layer, 0, 0);
    }
    for li in 0..scan.manifest.layers.len().min(8) {
        let _ = (scan.rank_by_mean(li), scan.dead_filters(li));
        for e in scan.top(li, 0) {
            let _ = scan.image_path(e.image);
        }
    }
    Ok(true)
}

/// `Ok(true)` for `Ok`, `Ok(false)` for an error with a message, `Err` for one without.
fn refused_cleanly<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<bool, String> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.to_string().trim().is_empty() => Err("refused without a message".into()),
        Err(_) => Ok(false),
    }
}
