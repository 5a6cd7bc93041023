//! A dataset scan beside the viewer's model or data directory (`view --scan DIR`, or the
//! scan a data directory holds): checked against the session's model, matched to its layers
//! into the view model's [`DatasetView`], and its crops decoded once per selected layer and
//! put into the atlas ([`upload_dataset`], [`append_hovered`]).

use std::path::Path;

use anyhow::{Result, bail};

use super::scan_source::ScanSource;
use super::session::Session;
use crate::render::{GpuContext, Renderer};
use crate::scan::open::OpenScan;
use crate::ui::dataset::{DatasetTiles, DatasetView};
use crate::ui::state::{Hover, Panel, ViewState};

impl Session {
    /// Opens the scan in `dir` beside this session's model. A scan of another model (by
    /// fingerprint) is refused; scanned layers the model lacks are left out, with a notice.
    pub fn open_scan(&mut self, dir: &Path) -> Result<()> {
        let scan = OpenScan::open(dir)?;
        let (name, fingerprint) = self.identity();
        if scan.manifest.model.fingerprint != fingerprint {
            bail!(
                "{} is a scan of model `{}` (fingerprint {}), not of `{name}` (fingerprint {fingerprint})",
                dir.display(),
                scan.manifest.model.name,
                short(&scan.manifest.model.fingerprint),
            );
        }
        let model_layers =
            (self.vm.layers.iter()).map(|l| (l.name.as_str(), l.map_dims().map(|d| d.0)));
        let (view, notes) = DatasetView::new(&scan, model_layers);
        if view.layers.iter().all(Option::is_none) {
            bail!(
                "{}: none of its {} layers is a layer of this model with as many filters ({})",
                dir.display(),
                scan.manifest.layers.len(),
                notes.join("; ")
            );
        }
        if !notes.is_empty() {
            eprintln!("scan {}: {}", dir.display(), notes.join("; "));
            self.vm.notify(notes.join("; "));
        }
        if let Some(shard) = scan.manifest.shard {
            self.vm.notify(format!(
                "this is shard {} of {} of a scan (images {}..{}); `convlens scan merge` joins the shards",
                shard.index, shard.count, shard.first, shard.end
            ));
        }
        self.vm.dataset = Some(view);
        self.scan = Some(ScanSource::new(scan));
        Ok(())
    }

    /// Dead filters over the dataset of `layer`, where the open scan has the layer.
    pub(super) fn dataset_dead(&self, layer: usize) -> Option<&[usize]> {
        let l = self.vm.dataset.as_ref()?.layer(layer)?;
        Some(l.dead.as_slice())
    }
}

/// The first characters of a fingerprint, for messages.
fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

/// Uploads what `state` shows of the open scan: the selected layer's top-1 crops while the
/// "dataset examples" panel is shown, and a hovered filter's top-k crops. `None` without a
/// scan of the selected layer.
pub fn upload_dataset(
    renderer: &mut Renderer,
    ctx: &GpuContext,
    session: &mut Session,
    state: &ViewState,
) -> Result<Option<DatasetTiles>> {
    let layer = state.selected;
    let (Some(source), Some(dataset)) = (session.scan.as_mut(), session.vm.dataset.as_ref()) else {
        return Ok(None);
    };
    let Some(scanned) = dataset.layer(layer) else {
        return Ok(None);
    };
    let mut tiles = DatasetTiles {
        layer,
        ..Default::default()
    };
    if state.panel == Panel::DatasetExamples {
        for filter in 0..scanned.top.len() {
            let handle = match source.crop(dataset, layer, filter, 0) {
                Some(img) => Some(renderer.atlas.upload_rgb8(&ctx.device, &ctx.queue, img)?),
                None => None,
            };
            tiles.top1.push(handle);
        }
    }
    append_hovered(renderer, ctx, session, state, &mut tiles)?;
    Ok(Some(tiles))
}

/// Uploads the hovered filter's top-k crops into the atlas (after what is there) unless
/// `tiles` has them. Returns whether it uploaded anything.
pub fn append_hovered(
    renderer: &mut Renderer,
    ctx: &GpuContext,
    session: &mut Session,
    state: &ViewState,
    tiles: &mut DatasetTiles,
) -> Result<bool> {
    let Hover::Tile(filter) = state.hover else {
        return Ok(false);
    };
    let (Some(source), Some(dataset)) = (session.scan.as_mut(), session.vm.dataset.as_ref()) else {
        return Ok(false);
    };
    let have = tiles.hovered.as_ref().is_some_and(|(k, _)| *k == filter);
    let Some(top) = dataset.layer(tiles.layer).and_then(|l| l.top.get(filter)) else {
        return Ok(false);
    };
    if have || tiles.layer != state.selected {
        return Ok(false);
    }
    let mut handles = Vec::with_capacity(top.len());
    for rank in 0..top.len() {
        handles.push(match source.crop(dataset, tiles.layer, filter, rank) {
            Some(img) => Some(renderer.atlas.upload_rgb8(&ctx.device, &ctx.queue, img)?),
            None => None,
        });
    }
    tiles.hovered = Some((filter, handles));
    Ok(true)
}
