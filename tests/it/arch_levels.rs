//! The architecture's levels on a real file: the 12,501-layer residual stack of
//! `scripts/make_deep_model.py` (`stageS/blockB/…`) loads, its view model has the levels
//! stage → block → layer, and blocks open in place.

use std::collections::BTreeSet;

use convlens::model::LoadedModel;
use convlens::ui::ViewModel;

use crate::common::fixture;

#[test]
fn a_twelve_thousand_layer_model_browses_from_stages_to_layers() {
    let m = LoadedModel::from_file(&fixture("deep/residual_12501.onnx"), None).expect("loads");
    let vm = ViewModel::from_graph(&m.graph, Vec::new(), "test".into());
    assert_eq!(vm.layers.len(), 12_501);
    // Large enough that the viewer opens it in blocks.
    assert!(vm.layers.len() > convlens::app::AUTO_COLLAPSE_LAYERS);
    let levels = &vm.levels;
    let top = levels.items(&BTreeSet::new());
    let names: Vec<&str> = (top.iter())
        .map(|item| item.block.map_or("", |b| levels.blocks[b].name.as_str()))
        .collect();
    assert_eq!(
        names,
        ["", "stage0", "stage1", "stage2", "stage3", "stage4"]
    );
    assert_eq!(top[3].layers, 1 + 2 * 2500..1 + 3 * 2500);

    // stage2 opens into its 500 blocks of 5 layers; block 7 of them into its layers.
    let stage2 = top[3].block.expect("a block");
    let open = BTreeSet::from([stage2]);
    let items = levels.items(&open);
    assert_eq!(items.len(), 5 + 500);
    let block7 = items[3 + 7].block.expect("a block");
    assert_eq!(levels.blocks[block7].name, "block7");
    let first = 1 + 2 * 2500 + 7 * 5;
    assert_eq!(levels.blocks[block7].layers, first..first + 5);
    assert_eq!(vm.layers[first].name, "stage2/block7/conv1");
    let open = BTreeSet::from([stage2, block7]);
    let items = levels.items(&open);
    assert_eq!(items.len(), 5 + 499 + 5);
    assert_eq!(items[3 + 7].layers, first..first + 1);
    assert_eq!(levels.path_to(first + 3), vec![stage2, block7]);
}
