//! The scan's running state and its checkpoint file: what a checkpoint must match to be
//! continued ([`CheckpointKey`]), the state itself ([`ScanState`]), saved atomically every
//! few steps by [`super::run`] and loaded, checked for consistency, by `--resume`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::accumulate::{LayerScan, TopEntry};
use super::format::{self, Settings, ShardInfo};
use super::{Result, ScanError, io_err};

/// Name of the running state inside the work folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// Everything a checkpoint must match to be continued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct CheckpointKey {
    pub(super) model_fingerprint: String,
    pub(super) layers: Vec<String>,
    pub(super) settings: Settings,
    pub(super) shard: Option<ShardInfo>,
    /// Fingerprint of this process's file list.
    pub(super) files: String,
    pub(super) top_k: usize,
    pub(super) batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SkippedAt {
    /// Position in this process's file list.
    pub(super) file: usize,
    pub(super) reason: String,
}

/// The running state, as saved in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ScanState {
    pub(super) key: CheckpointKey,
    /// Files `0..next_file` of this process's list are done.
    pub(super) next_file: usize,
    /// Images scanned so far (the next image's index).
    pub(super) images: u64,
    pub(super) skipped: Vec<SkippedAt>,
    pub(super) layers: Vec<LayerScan>,
}

pub(super) fn files_fingerprint(files: &[PathBuf]) -> String {
    let mut bytes = Vec::new();
    for f in files {
        bytes.extend_from_slice(f.as_os_str().as_encoded_bytes());
        bytes.push(0);
    }
    format!(
        "{}:{}",
        files.len(),
        crate::model::onnx::fingerprint(&bytes)
    )
}

/// The saved state when it exists and matches `key`; `None` when there is none.
pub(super) fn load_checkpoint(path: &Path, key: &CheckpointKey) -> Result<Option<ScanState>> {
    if !path.exists() {
        return Ok(None);
    }
    let state: ScanState = format::read_json(path)?;
    if &state.key == key {
        check_state(&state).map_err(|reason| ScanError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        })?;
    }
    if &state.key != key {
        return Err(ScanError::Checkpoint {
            path: path.to_path_buf(),
            reason: "it belongs to another scan (model, layers, settings, input list, \
                     shard, --top-k or --batch differ); run without --resume to start over"
                .into(),
        });
    }
    Ok(Some(state))
}

/// A checkpoint whose key matches must also be a state this scan could have written: its
/// layers as the key names them, one statistic and one top list (at most `top_k` long, inside
/// the map and the images so far) per filter, and counts that agree. A damaged or crafted
/// file is refused here rather than trusted by the rest of the run.
fn check_state(state: &ScanState) -> std::result::Result<(), String> {
    let key = &state.key;
    if state.layers.len() != key.layers.len() {
        return Err(format!(
            "it has {} layers, its key names {}",
            state.layers.len(),
            key.layers.len()
        ));
    }
    let files = key
        .shard
        .map_or(key.settings.inputs_total, |s| s.end.saturating_sub(s.first));
    if state.next_file > files || state.images > state.next_file as u64 {
        return Err(format!(
            "{} files done and {} images of {files}",
            state.next_file, state.images
        ));
    }
    if state.skipped.iter().any(|s| s.file >= state.next_file)
        || state.skipped.len() as u64 + state.images != state.next_file as u64
    {
        return Err("its skipped files do not add up".into());
    }
    for (layer, name) in state.layers.iter().zip(&key.layers) {
        let [c, h, w] = layer.shape;
        let bad = |why: &str| Err(format!("layer `{}`: {why}", layer.name));
        if &layer.name != name {
            return bad(&format!("expected `{name}`"));
        }
        if layer.filters.len() != c || layer.top.len() != c {
            return bad("the filter count differs from its shape");
        }
        let outside =
            |e: &TopEntry| e.image >= state.images || e.y as usize >= h || e.x as usize >= w;
        if layer
            .top
            .iter()
            .any(|t| t.len() > key.top_k || t.iter().any(outside))
        {
            return bad("a top entry is outside the map or the images so far");
        }
    }
    Ok(())
}

/// Parses checkpoint bytes and checks them as [`load_checkpoint`] does a file whose key
/// matches (the fuzz target's entry point; nothing is run).
#[doc(hidden)]
pub fn check_checkpoint_bytes(bytes: &[u8]) -> std::result::Result<(), String> {
    let state: ScanState = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    check_state(&state)
}

pub(super) fn save_checkpoint(path: &Path, state: &ScanState) -> Result<()> {
    let json = serde_json::to_vec(state).map_err(|e| ScanError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::atomic_file::write_atomic(path, &json, true).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consistent state: 3 files done (one skipped), one 2-filter 2×3 layer, top-2.
    fn state() -> ScanState {
        let mut layer = LayerScan::new("conv", [2, 2, 3]);
        let maps: Vec<f32> = (0..24).map(|v| v as f32 - 5.0).collect();
        layer.add_images(&maps, 0, 2, 2);
        ScanState {
            key: CheckpointKey {
                model_fingerprint: "f".into(),
                layers: vec!["conv".into()],
                settings: Settings {
                    size: [4, 4],
                    mean: [0.0; 3],
                    std: [1.0; 3],
                    fit: "stretch".into(),
                    crop_size: 8,
                    inputs_total: 5,
                },
                shard: None,
                files: "5:x".into(),
                top_k: 2,
                batch: 2,
            },
            next_file: 3,
            images: 2,
            skipped: vec![SkippedAt {
                file: 1,
                reason: "unreadable".into(),
            }],
            layers: vec![layer],
        }
    }

    fn check(s: &ScanState) -> std::result::Result<(), String> {
        check_checkpoint_bytes(&serde_json::to_vec(s).unwrap())
    }

    #[test]
    fn checkpoints_that_do_not_add_up_are_refused() {
        assert_eq!(check(&state()), Ok(()));
        type Tamper = fn(&mut ScanState);
        let tampered: [(&str, Tamper); 7] = [
            ("a top entry outside the map", |s| {
                s.layers[0].top[0][0].y = 2
            }),
            ("an image not scanned yet", |s| {
                s.layers[0].top[1][0].image = 2
            }),
            ("a longer top list than top_k", |s| {
                let e = s.layers[0].top[0][0];
                s.layers[0].top[0].push(e);
            }),
            ("a filter too few", |s| {
                s.layers[0].filters.pop();
            }),
            ("another layer", |s| s.layers[0].name = "fc".into()),
            ("more files than the input list", |s| s.next_file = 6),
            ("a skipped file not done yet", |s| s.skipped[0].file = 3),
        ];
        for (what, tamper) in tampered {
            let mut s = state();
            tamper(&mut s);
            assert!(check(&s).is_err(), "{what} was accepted");
        }
        assert!(check_checkpoint_bytes(b"{\"key\": 1}").is_err());
    }
}
