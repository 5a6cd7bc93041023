//! What the interaction state machine ([`super::state`]) needs to know about the model
//! and the current frame: layer count, the selected layer's tile grid, the architecture's
//! nodes. Built per event by [`super::scene::model_shape`]; plain data, so the state's
//! tests build it by hand.

use super::layout::{Rect, TileGrid};
use super::levels::ArchItem;

/// What the state machine needs to know about the model (see
/// [`super::scene::model_shape`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelShape {
    /// Number of layers.
    pub layers: usize,
    /// Tile grid of the selected layer, if it has per-channel maps.
    pub grid: Option<TileGrid>,
    /// Layers that have per-channel maps, in order (for stepping with the keyboard).
    pub map_layers: Vec<usize>,
    /// Hover targets of the selected layer's class chart (window pixels).
    pub bars: Vec<Rect>,
    /// Which filter each grid position shows, when the tiles are sorted by rank.
    pub order: Option<Vec<usize>>,
    /// The architecture's nodes when collapsed (None: one node per layer).
    pub arch_items: Option<Vec<ArchItem>>,
}

impl ModelShape {
    /// Number of nodes the architecture draws.
    pub fn arch_count(&self) -> usize {
        self.arch_items.as_ref().map_or(self.layers, Vec::len)
    }

    /// The node that shows `layer`.
    pub fn item_of(&self, layer: usize) -> usize {
        self.arch_items.as_ref().map_or(layer, |items| {
            (items.iter())
                .position(|item| item.layers.contains(&layer))
                .unwrap_or(0)
        })
    }

    /// The closed block node `item` stands for, if it is one.
    pub fn block_of(&self, item: usize) -> Option<usize> {
        self.arch_items.as_ref()?.get(item)?.block
    }

    /// The first layer of node `item`.
    pub fn first_layer(&self, item: usize) -> usize {
        self.arch_items
            .as_ref()
            .and_then(|items| items.get(item))
            .map_or(item, |item| item.layers.start)
    }
}
