//! `convlens annotations …`: where a model's filter marks live, setting marks from scripts,
//! and exporting them as CSV or JSON. The same store the viewer saves to on every click.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::ModelArgs;
use crate::annotations::{self, AnnotationStore, Mark};
use crate::model::LoadedModel;

#[derive(Args, Debug)]
pub struct AnnotationsArgs {
    #[command(subcommand)]
    pub command: AnnotationsCommand,
}

#[derive(Subcommand, Debug)]
pub enum AnnotationsCommand {
    /// Print the file the model's annotations are kept in.
    Path(AnnotationTarget),
    /// Write the model's annotations as CSV (`layer,filter,mark`) or JSON.
    Export(ExportAnnotationsArgs),
    /// Mark filters good or bad, or clear their marks.
    Set(SetAnnotationsArgs),
}

/// Which model, and which annotation file (default: the model's own under the data dir).
#[derive(Args, Debug, Clone)]
pub struct AnnotationTarget {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Annotation file (default: `$CONVLENS_DATA_DIR`, `$XDG_DATA_HOME/convlens` or
    /// `~/.local/share/convlens`, then `annotations/<model>-<fingerprint>.json`).
    #[arg(long, value_name = "FILE.json")]
    pub annotations: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ExportAnnotationsArgs {
    #[command(flatten)]
    pub target: AnnotationTarget,
    /// Output file: `.csv` or `.json`.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct SetAnnotationsArgs {
    #[command(flatten)]
    pub target: AnnotationTarget,
    /// Layer name (see `convlens info`).
    #[arg(long)]
    pub layer: String,
    /// Filter numbers from 1, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub filter: Vec<usize>,
    /// good, bad or clear.
    #[arg(long)]
    pub mark: String,
}

/// `convlens annotations …`.
pub fn run(args: &AnnotationsArgs) -> Result<()> {
    match &args.command {
        AnnotationsCommand::Path(t) => {
            let (model, path) = resolve(t)?;
            drop(model);
            println!("{}", path.display());
            Ok(())
        }
        AnnotationsCommand::Export(a) => export(a),
        AnnotationsCommand::Set(a) => set(a),
    }
}

fn resolve(t: &AnnotationTarget) -> Result<(LoadedModel, PathBuf)> {
    let model = t.model.load()?;
    let path = match &t.annotations {
        Some(p) => p.clone(),
        None => annotations::default_path(&model.graph.name, &model.graph.fingerprint)?,
    };
    Ok((model, path))
}

fn open(t: &AnnotationTarget) -> Result<(LoadedModel, AnnotationStore)> {
    let (model, path) = resolve(t)?;
    let store = AnnotationStore::open(&path, &model.graph.name, &model.graph.fingerprint)?;
    Ok((model, store))
}

fn export(a: &ExportAnnotationsArgs) -> Result<()> {
    let (_, store) = open(&a.target)?;
    let text = match extension(&a.out).as_deref() {
        Some("csv") => store.annotations.to_csv(),
        Some("json") => store.annotations.to_json(),
        _ => bail!("--out {}: expected a .csv or .json file", a.out.display()),
    };
    crate::atomic_file::write_atomic(&a.out, text.as_bytes(), true)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let marks = store.annotations.iter().count();
    eprintln!("wrote {} ({marks} marks)", a.out.display());
    Ok(())
}

fn set(a: &SetAnnotationsArgs) -> Result<()> {
    let mark = Mark::parse(&a.mark)?;
    let (model, mut store) = open(&a.target)?;
    let node = model
        .graph
        .nodes
        .iter()
        .find(|n| n.name == a.layer)
        .with_context(|| format!("no layer named '{}' (see `convlens info`)", a.layer))?;
    let channels = match node.output_shape() {
        [1, c, _, _] => *c,
        s => bail!(
            "layer '{}' has output {s:?}, not filter maps [1, C, H, W]",
            a.layer
        ),
    };
    if let Some(bad) = a.filter.iter().find(|&&n| n == 0 || n > channels) {
        bail!(
            "--filter {bad}: layer '{}' has filters 1..={channels}",
            a.layer
        );
    }
    let marks: Vec<_> = a
        .filter
        .iter()
        .map(|&n| (a.layer.clone(), n - 1, mark))
        .collect();
    let changed = store.set_many(&marks)?;
    let where_ = store
        .path()
        .map_or_else(String::new, |p| p.display().to_string());
    eprintln!("{changed} marks changed in {where_}");
    Ok(())
}

fn extension(p: &Path) -> Option<String> {
    p.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}
