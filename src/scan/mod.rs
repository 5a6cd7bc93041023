//! Dataset scan (`convlens scan`): every filter's statistics and top-k dataset examples over
//! a folder or list of images, in batches through the [`crate::engine`], with checkpoints,
//! shards for cluster schedulers, and an exact merge of shards.
//!
//! Flow: [`inputs`] lists the images, [`shard`] picks this process's block of them,
//! [`run`] pushes them through the engine into the running state of [`accumulate`] (saved
//! as a checkpoint every few batches), then finds each top unit's input pixels with
//! [`receptive`], crops them, and writes the directory [`format`] describes; [`merge`]
//! combines shard directories into one, equal to a single-process scan; [`open`] reads a
//! finished scan back for the viewer.

pub mod accumulate;
pub mod checkpoint;
pub mod crop;
pub mod format;
pub mod inputs;
pub mod merge;
pub mod open;
pub mod receptive;
pub mod run;
pub mod shard;
pub mod topk_json;

use std::path::PathBuf;

use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A scan directory's file that does not follow the format.
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{0}")]
    NoInputs(String),
    #[error("{0}")]
    Shard(String),
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{0}")]
    Merge(String),
    #[error("layer selection: {0}")]
    Layers(String),
    #[error("no image could be scanned ({skipped} skipped; first: {first})")]
    NothingScanned { skipped: usize, first: String },
    #[error("cannot write {}: {error}", path.display())]
    Png {
        path: PathBuf,
        error: image::ImageError,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

pub type Result<T, E = ScanError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ScanError + '_ {
    move |error| ScanError::Io {
        path: path.to_path_buf(),
        error,
    }
}
