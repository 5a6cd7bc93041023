//! A dataset scan opened beside the viewer's session, and its crops decoded once per
//! selected layer ([`super::dataset`] opens it, checks it and uploads its crops).

use std::collections::HashMap;

use image::RgbImage;

use crate::scan::open::OpenScan;
use crate::ui::dataset::DatasetView;

/// The opened scan and the crops decoded so far.
#[derive(Debug)]
pub struct ScanSource {
    pub scan: OpenScan,
    /// The model layer whose crops `crops` holds (one layer at a time bounds the memory).
    crops_layer: Option<usize>,
    /// `(filter, rank)` → the crop (`None`: unreadable, drawn as an empty frame).
    crops: HashMap<(usize, usize), Option<RgbImage>>,
}

impl ScanSource {
    pub fn new(scan: OpenScan) -> Self {
        Self {
            scan,
            crops_layer: None,
            crops: HashMap::new(),
        }
    }

    /// The crop of `rank` of `filter` of model layer `layer`, decoded on first use.
    pub(super) fn crop(
        &mut self,
        dataset: &DatasetView,
        layer: usize,
        filter: usize,
        rank: usize,
    ) -> Option<&RgbImage> {
        if self.crops_layer != Some(layer) {
            self.crops.clear();
            self.crops_layer = Some(layer);
        }
        let scan_layer = dataset.layer(layer)?.scan_layer;
        let scan = &self.scan;
        self.crops
            .entry((filter, rank))
            .or_insert_with(|| scan.crop(scan_layer, filter, rank).ok())
            .as_ref()
    }
}
