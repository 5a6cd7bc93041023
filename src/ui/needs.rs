//! What the view needs computed for the current state, as plain data: a pure function of the
//! view model and the interaction state. The window hands each need to its compute worker
//! (skipping what the session already has); the screenshot path computes them in place
//! (`Session::fulfil`). Neither decides on its own what a view shows.

use super::ViewModel;
use super::scene::wanted_cam;
use super::state::{Panel, ViewState};
use crate::format::Method;

/// One result the view needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Per-filter images of `layer` under a method other than forward (the forward maps come
    /// with every forward pass).
    FilterImages { layer: usize, method: Method },
    /// The Grad-CAM map of `class` at `layer`: a hovered class bar's, or the top class's in
    /// the Grad-CAM panel.
    Cam { layer: usize, class: usize },
}

/// Everything the view needs for `state`, per-filter images first.
pub fn view_needs(vm: &ViewModel, state: &ViewState) -> Vec<Need> {
    let mut needs = Vec::new();
    let (layer, method) = (state.selected, state.method);
    let has_maps = vm.layers.get(layer).and_then(|l| l.map_dims()).is_some();
    if method != Method::Forward && has_maps && state.panel == Panel::Tiles {
        needs.push(Need::FilterImages { layer, method });
    }
    if let Some((layer, class)) = wanted_cam(vm, state) {
        needs.push(Need::Cam { layer, class });
    }
    needs
}
