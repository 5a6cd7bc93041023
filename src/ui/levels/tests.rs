use super::*;
use crate::ui::blocks::tests::layer;

fn keys(name: &str) -> Vec<&str> {
    name_path(name)
        .into_iter()
        .map(|end| &name[..end])
        .collect()
}

#[test]
fn name_paths_are_the_prefixes_before_each_separator() {
    assert_eq!(keys("stage3/block17/conv1"), ["stage3", "stage3/block17"]);
    assert_eq!(
        keys("/layer1/layer1.0/conv1/Conv"),
        ["/layer1", "/layer1/layer1.0", "/layer1/layer1.0/conv1"]
    );
    assert_eq!(keys("layer1.0.conv1"), ["layer1", "layer1.0"]);
    assert_eq!(keys("/_conv_stem/Conv"), ["/_conv_stem"]);
    assert!(keys("conv5").is_empty() && keys("").is_empty() && keys("/").is_empty());
    assert_eq!(last_segment("/layer1/layer1.0"), "layer1.0");
}

/// Every layer exactly once, in order, whatever is open.
fn assert_covers(tree: &LevelTree, open: &BTreeSet<usize>, layers: usize) {
    let covered: Vec<usize> = (tree.items(open).iter())
        .flat_map(|item| item.layers.clone())
        .collect();
    assert_eq!(covered, (0..layers).collect::<Vec<_>>());
}

/// `stem`, then `stages` × `blocks` residual blocks named `stageS/blockB/…` (conv, relu,
/// conv, add with the block input, relu), then `head/gap`, `head/fc`.
fn residual_stack(stages: usize, blocks: usize) -> Vec<LayerInfo> {
    let mut layers = vec![layer("stem/conv", "Conv", &[])];
    for s in 0..stages {
        for b in 0..blocks {
            let input = layers.len() - 1;
            let base = format!("stage{s}/block{b}");
            for (op, t) in [("conv1", "Conv"), ("relu1", "Relu"), ("conv2", "Conv")] {
                let p = layers.len() - 1;
                layers.push(layer(&format!("{base}/{op}"), t, &[p]));
            }
            let p = layers.len() - 1;
            layers.push(layer(&format!("{base}/add"), "Add", &[p, input]));
            layers.push(layer(&format!("{base}/relu2"), "Relu", &[p + 1]));
        }
    }
    let p = layers.len() - 1;
    layers.push(layer("head/gap", "GlobalAveragePool", &[p]));
    layers.push(layer("head/fc", "Gemm", &[p + 1]));
    layers
}

#[test]
fn stages_blocks_and_layers_are_three_levels() {
    let layers = residual_stack(3, 30);
    assert_eq!(layers.len(), 1 + 3 * 30 * 5 + 2);
    let tree = LevelTree::of(&layers);
    assert_eq!(tree.depth(), 2);
    let none = BTreeSet::new();
    let top = tree.items(&none);
    let names: Vec<&str> = (top.iter())
        .map(|item| item.block.map_or("layer", |b| tree.blocks[b].name.as_str()))
        .collect();
    // The stem is one layer; the head's two layers are a block.
    assert_eq!(names, ["layer", "stage0", "stage1", "stage2", "head"]);
    assert_eq!(top[2].layers, 151..301);
    assert_covers(&tree, &none, layers.len());

    // Opening stage1 puts its 30 blocks in its place.
    let stage1 = top[2].block.unwrap();
    let open = BTreeSet::from([stage1]);
    let items = tree.items(&open);
    assert_eq!(items.len(), top.len() - 1 + 30);
    assert_eq!(items[2].layers, 151..156);
    assert_eq!(tree.blocks[items[2].block.unwrap()].name, "block0");
    assert_covers(&tree, &open, layers.len());

    // Opening block 4 of stage 1 shows its five layers.
    let block4 = items[2 + 4].block.unwrap();
    let open = BTreeSet::from([stage1, block4]);
    let items = tree.items(&open);
    assert_eq!(items.len(), top.len() - 1 + 30 - 1 + 5);
    assert_eq!(items[6], ArchItem::layer(171));
    assert_covers(&tree, &open, layers.len());

    assert_eq!(tree.path_to(172), vec![stage1, block4]);
    assert_eq!(tree.blocks[block4].parent, Some(stage1));
    assert!(tree.path_to(0).is_empty());
    assert_eq!(tree.innermost_open(172, &open), Some(block4));
    assert_eq!(
        tree.innermost_open(172, &BTreeSet::from([stage1])),
        Some(stage1)
    );
    assert_eq!(tree.innermost_open(172, &none), None);
    // Opening a block inside a closed one shows nothing of it.
    assert_eq!(tree.items(&BTreeSet::from([block4])), top);
}

#[test]
fn one_level_names_are_one_level() {
    let names = [
        "/_conv_stem/Conv",
        "/_relu/Relu",
        "/_blocks.0/_depthwise_conv/Conv",
        "/_blocks.0/_relu/Relu",
        "/_blocks.0/_project_conv/Conv",
        "/_blocks.1/_expand_conv/Conv",
        "/_blocks.1/_relu/Relu",
        "/_conv_head/Conv",
    ];
    let layers: Vec<LayerInfo> = (names.iter().enumerate())
        .map(|(i, n)| layer(n, "Conv", &i.checked_sub(1).into_iter().collect::<Vec<_>>()))
        .collect();
    let tree = LevelTree::of(&layers);
    let top = tree.items(&BTreeSet::new());
    let spans: Vec<_> = top.iter().map(|item| item.layers.clone()).collect();
    assert_eq!(spans, vec![0..1, 1..2, 2..5, 5..7, 7..8]);
    assert_eq!(tree.blocks[top[2].block.unwrap()].name, "_blocks.0");
    assert_eq!(tree.depth(), 1);
}

#[test]
fn torchvision_stages_hold_their_blocks() {
    // `/layer1/layer1.B/…`: the stage is a level above its blocks, even when the stage holds
    // more layers than a block should.
    let mut layers = vec![layer("/conv1/Conv", "Conv", &[])];
    for b in 0..2 {
        let input = layers.len() - 1;
        for k in 0..9 {
            let p = layers.len() - 1;
            layers.push(layer(
                &format!("/layer1/layer1.{b}/conv{k}/Conv"),
                "Conv",
                &[p],
            ));
        }
        let p = layers.len() - 1;
        layers.push(layer(
            &format!("/layer1/layer1.{b}/Add"),
            "Add",
            &[p, input],
        ));
    }
    let tree = LevelTree::of(&layers);
    let top = tree.items(&BTreeSet::new());
    assert_eq!(top.len(), 2);
    let stage = top[1].block.unwrap();
    assert_eq!(tree.blocks[stage].name, "layer1");
    let inside = tree.items(&BTreeSet::from([stage]));
    let spans: Vec<_> = inside.iter().map(|item| item.layers.clone()).collect();
    assert_eq!(spans, vec![0..1, 1..11, 11..21]);
    assert_eq!(tree.blocks[inside[2].block.unwrap()].name, "layer1.1");
}

#[test]
fn a_long_flat_named_run_gets_the_structures_blocks() {
    // One stage name over two residual blocks of 10 layers each, no block names.
    let mut layers = vec![layer("/conv1/Conv", "Conv", &[])];
    for b in 0..2 {
        let input = layers.len() - 1;
        for k in 0..9 {
            let p = layers.len() - 1;
            layers.push(layer(&format!("/layer1/conv{b}_{k}"), "Conv", &[p]));
        }
        let p = layers.len() - 1;
        layers.push(layer(&format!("/layer1/add{b}"), "Add", &[p, input]));
    }
    let tree = LevelTree::of(&layers);
    let stage = tree.top[1];
    let Child::Block(stage) = stage else {
        panic!("{stage:?}")
    };
    let inside = tree.items(&BTreeSet::from([stage]));
    let spans: Vec<_> = inside.iter().map(|item| item.layers.clone()).collect();
    assert_eq!(spans, vec![0..1, 1..11, 11..21]);
    assert_eq!(tree.blocks[inside[1].block.unwrap()].parent, Some(stage));
}

#[test]
fn flat_names_take_the_structures_blocks() {
    let layers: Vec<LayerInfo> = ["Conv", "Relu", "MaxPool", "Conv", "Relu", "Gemm"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            layer(
                &format!("n{i}"),
                t,
                &i.checked_sub(1).into_iter().collect::<Vec<_>>(),
            )
        })
        .collect();
    let tree = LevelTree::of(&layers);
    let top = tree.items(&BTreeSet::new());
    let spans: Vec<_> = top.iter().map(|item| item.layers.clone()).collect();
    assert_eq!(spans, vec![0..3, 3..5, 5..6]);
    assert_eq!(tree.blocks[top[0].block.unwrap()].name, "conv 1");
    // Nothing to group: every layer its own node, no blocks.
    let two = &layers[..1];
    let tree = LevelTree::of(two);
    assert!(tree.blocks.is_empty());
    assert_eq!(tree.items(&BTreeSet::new()), vec![ArchItem::layer(0)]);
    assert!(LevelTree::of(&[]).items(&BTreeSet::new()).is_empty());
}

#[test]
fn a_wide_level_of_same_shaped_blocks_gets_stages() {
    // 100 blocks named `blockB/…` with no stage names; the map shape changes every 25.
    let mut layers = Vec::new();
    for b in 0..100 {
        for op in ["conv", "relu"] {
            let p: Vec<usize> = layers.len().checked_sub(1).into_iter().collect();
            let mut l = layer(&format!("block{b}/{op}"), "Conv", &p);
            l.output_shape = vec![1, 8 << (b / 25), 32 >> (b / 25), 32 >> (b / 25)];
            layers.push(l);
        }
    }
    let tree = LevelTree::of(&layers);
    let top = tree.items(&BTreeSet::new());
    assert_eq!(top.len(), 4);
    assert_eq!(top[1].layers, 50..100);
    let stage = top[1].block.unwrap();
    assert_eq!(tree.blocks[stage].name, "stage 2 (1×16×16×16)");
    let inside = tree.items(&BTreeSet::from([stage]));
    assert_eq!(inside.len(), 3 + 25);
    assert_eq!(tree.blocks[inside[1].block.unwrap()].name, "block25");
    assert_eq!(tree.blocks[inside[1].block.unwrap()].parent, Some(stage));
    assert_eq!(tree.depth(), 2);
}
