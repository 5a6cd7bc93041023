//! The blocks the graph's structure gives, for the architecture's levels
//! ([`super::levels`]) where names give none: a block ends where a single tensor is all that
//! flows on (a residual or inception block is one block), and plain chains group each
//! weighted layer with the activations and pooling that follow it. Pure functions of the
//! layer list, unit-tested.

use std::ops::Range;

use super::LayerInfo;

/// Positions `i` (1..n) where the chain can be cut between layer `i - 1` and layer `i`: no
/// layer before `i - 1` feeds a layer at `i` or later, so only one tensor crosses.
pub fn cut_points(producers: &[Vec<usize>]) -> Vec<usize> {
    let n = producers.len();
    // reach[j] = the furthest layer that reads layer j's output.
    let mut reach: Vec<usize> = (0..n).collect();
    for (k, ps) in producers.iter().enumerate() {
        for &p in ps {
            if p < n {
                reach[p] = reach[p].max(k);
            }
        }
    }
    let mut cuts = Vec::new();
    // Furthest reach of layers 0..i-1 (exclusive of i - 1).
    let mut reach_before = 0usize;
    for i in 1..n {
        if i >= 2 {
            reach_before = reach_before.max(reach[i - 2]);
        }
        if i < 2 || reach_before < i {
            cuts.push(i);
        }
    }
    cuts
}

/// Structural blocks of `layers[range]`: segments between [`cut_points`]; a multi-layer
/// segment (a branching block) stands alone and takes in the unweighted single layers right
/// after it that keep its output shape (the ReLU after a residual add); runs of single layers
/// group as "a weighted layer and the unweighted ones after it" (conv + ReLU + pool). Layer
/// indices are the model's; an input from before `range` counts as coming from its first
/// layer (it stays live to there, so no cut falls before it).
pub fn structural_groups(layers: &[LayerInfo], range: Range<usize>) -> Vec<Range<usize>> {
    structural_groups_with_cores(layers, range)
        .into_iter()
        .map(|(group, _)| group)
        .collect()
}

/// [`structural_groups`], each with its core: the segment or weighted layer it started with,
/// before taking in the layers after it (what its name comes from).
fn structural_groups_with_cores(
    layers: &[LayerInfo],
    range: Range<usize>,
) -> Vec<(Range<usize>, Range<usize>)> {
    let start = range.start;
    // Position 0 stands for everything before `range`; layer `start + k` is position k + 1.
    let mut producers: Vec<Vec<usize>> = vec![Vec::new()];
    producers.extend(layers[range.clone()].iter().map(|l| {
        (l.producers.iter())
            .map(|&p| if p < start { 0 } else { p - start + 1 })
            .collect()
    }));
    let layers = &layers[range];
    let mut bounds = vec![0];
    // A cut between "before" and the first layer is no cut inside the range.
    bounds.extend(
        cut_points(&producers)
            .into_iter()
            .filter(|&c| c >= 2)
            .map(|c| c - 1),
    );
    bounds.push(layers.len());
    bounds.dedup();
    let segments = bounds
        .windows(2)
        .map(|w| w[0] + start..w[1] + start)
        .filter(|r| !r.is_empty());
    let mut groups: Vec<(Range<usize>, Range<usize>)> = Vec::new();
    // What the last group may take in next.
    #[derive(PartialEq)]
    enum Open {
        /// Nothing (it is an unweighted single layer).
        No,
        /// Unweighted layers of the same output shape (after a branching block).
        SameShape,
        /// Any unweighted layer (after a weighted layer of a plain chain).
        Any,
    }
    let mut open = Open::No;
    for seg in segments {
        if seg.len() > 1 {
            groups.push((seg.clone(), seg));
            open = Open::SameShape;
            continue;
        }
        let layer = &layers[seg.start - start];
        let weighted = is_weighted(layer);
        let takes = |last: &Range<usize>| match open {
            Open::No => false,
            Open::SameShape => layers[last.end - 1 - start].output_shape == layer.output_shape,
            Open::Any => true,
        };
        match groups.last_mut() {
            Some((last, _)) if !weighted && takes(last) => last.end = seg.end,
            _ => {
                groups.push((seg.clone(), seg));
                open = if weighted { Open::Any } else { Open::No };
            }
        }
    }
    groups
}

/// Layers that start a group in a plain chain: the ones with learned weights.
fn is_weighted(layer: &LayerInfo) -> bool {
    layer.is_conv || matches!(layer.type_name.as_str(), "Gemm" | "MatMul")
}

/// Whether a grouping actually shortens the chain: at least two groups and at most three
/// quarters as many nodes as layers.
pub fn shortens(groups: &[Range<usize>], layers: usize) -> bool {
    groups.len() >= 2 && groups.len() * 4 <= layers * 3
}

/// Most layers one named block may hold and still read as a block (more: a whole stage,
/// which gets the structure's blocks inside it).
pub const MAX_NAMED_BLOCK: usize = 16;

/// The structure's blocks over `layers[range]` ([`structural_groups`]) with a name each: the
/// block's layers' common name prefix where there is one, else its kind and a count
/// ("residual 3"); single layers keep their own name.
pub fn structural_blocks(layers: &[LayerInfo], range: Range<usize>) -> Vec<(Range<usize>, String)> {
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    structural_groups_with_cores(layers, range)
        .into_iter()
        .map(|(r, core)| {
            let kind = structural_kind(&layers[r.clone()]);
            let n = counts.entry(kind).or_insert(0);
            *n += 1;
            let name = if r.len() == 1 {
                layers[r.start].name.clone()
            } else {
                // Named after its core: the layers taken in after it may belong to the next
                // block by name (DenseNet's transition BN + ReLU after a dense block).
                let core = if core.len() > 1 { core } else { r.clone() };
                common_name(&layers[core]).unwrap_or_else(|| format!("{kind} {n}"))
            };
            (r, name)
        })
        .collect()
}

/// The name a block's layers share: their common prefix up to a separator (`/`, `.`, `_`),
/// last path segment only (`/layer1/layer1.0/conv1/Conv`, `/layer1/layer1.0/relu/Relu` →
/// `layer1.0`); `None` when that leaves fewer than two characters.
fn common_name(layers: &[LayerInfo]) -> Option<String> {
    let first = layers.first()?.name.as_str();
    let mut len = first.len();
    for l in &layers[1..] {
        len = first
            .char_indices()
            .zip(l.name.chars())
            .take_while(|((_, a), b)| a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0)
            .min(len);
    }
    let prefix = &first[..len];
    // Cut back to the last separator unless the prefix already ends at one.
    let whole = |end: usize| first[end..].starts_with(['/', '.', '_']) || end == first.len();
    let cut = if whole(len) {
        prefix
    } else {
        prefix.rfind(['/', '.', '_']).map_or("", |i| &prefix[..i])
    };
    let name = cut
        .trim_end_matches(['/', '.', '_'])
        .rsplit('/')
        .next()
        .unwrap_or("");
    (name.chars().count() >= 2).then(|| name.to_string())
}

/// What a structural block is, for its label.
fn structural_kind(layers: &[LayerInfo]) -> &'static str {
    let has = |t: &str| layers.iter().any(|l| l.type_name == t);
    if has("Add") || has("Sum") {
        "residual"
    } else if has("Concat") {
        "branches"
    } else if layers.first().is_some_and(|l| l.is_conv) {
        "conv"
    } else if layers.first().is_some_and(is_weighted) {
        "fc"
    } else {
        "block"
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn layer(name: &str, type_name: &str, producers: &[usize]) -> LayerInfo {
        let output_shape = match type_name {
            "GlobalAveragePool" => vec![1, 8, 1, 1],
            "Gemm" | "Flatten" => vec![1, 8],
            _ => vec![1, 8, 4, 4],
        };
        LayerInfo {
            name: name.into(),
            type_name: type_name.into(),
            output_shape,
            producers: producers.to_vec(),
            params_text: String::new(),
            is_conv: type_name == "Conv",
            pool: None,
            weights: None,
        }
    }

    /// A ResNet-shaped chain with flat names: stem conv, relu, pool, then two residual
    /// blocks (conv, relu, conv, add with the block input; relu after the add), then gap, fc.
    fn flat_resnet() -> Vec<LayerInfo> {
        vec![
            layer("resnetv17_conv0", "Conv", &[]),     // 0
            layer("resnetv17_relu0", "Relu", &[0]),    // 1
            layer("resnetv17_pool0", "MaxPool", &[1]), // 2
            layer("resnetv17_stage1_conv0", "Conv", &[2]),
            layer("resnetv17_stage1_relu0", "Relu", &[3]),
            layer("resnetv17_stage1_conv1", "Conv", &[4]),
            layer("resnetv17_stage1__plus0", "Add", &[5, 2]), // 6
            layer("resnetv17_stage1_activation0", "Relu", &[6]),
            layer("resnetv17_stage1_conv2", "Conv", &[7]), // 8
            layer("resnetv17_stage1_relu1", "Relu", &[8]),
            layer("resnetv17_stage1_conv3", "Conv", &[9]),
            layer("resnetv17_stage1__plus1", "Add", &[10, 7]), // 11
            layer("resnetv17_stage1_activation1", "Relu", &[11]),
            layer("resnetv17_pool1", "GlobalAveragePool", &[12]),
            layer("resnetv17_dense0", "Gemm", &[13]),
        ]
    }

    #[test]
    fn cuts_are_where_one_tensor_flows_on() {
        let producers: Vec<Vec<usize>> =
            flat_resnet().iter().map(|l| l.producers.clone()).collect();
        // Inside a residual block the block input is still live: no cuts at 4, 5, 6 or 9..11.
        assert_eq!(cut_points(&producers), vec![1, 2, 3, 7, 8, 12, 13, 14]);
        // A plain chain can be cut everywhere; a skip from 0 to 3 blocks cuts 2 and 3.
        assert_eq!(cut_points(&[vec![], vec![0], vec![1]]), vec![1, 2]);
        assert_eq!(
            cut_points(&[vec![], vec![0], vec![1], vec![2, 0], vec![3]]),
            vec![1, 4]
        );
        assert!(cut_points(&[]).is_empty() && cut_points(&[vec![]]).is_empty());
    }

    #[test]
    fn residual_blocks_are_named_by_their_common_prefix() {
        let layers = flat_resnet();
        let b = structural_blocks(&layers, 0..layers.len());
        let (ranges, names): (Vec<_>, Vec<_>) = b.into_iter().unzip();
        assert_eq!(ranges, vec![0..3, 3..8, 8..13, 13..14, 14..15]);
        assert_eq!(
            names,
            vec![
                "resnetv17",
                "resnetv17_stage1",
                "resnetv17_stage1",
                "resnetv17_pool1",
                "resnetv17_dense0"
            ]
        );
        // Inside a range, indices stay the model's; the input from before the range keeps
        // the first residual block whole.
        assert_eq!(structural_groups(&layers, 3..13), vec![3..8, 8..13]);
        assert_eq!(structural_groups(&layers, 4..13), vec![4..8, 8..13]);
    }

    #[test]
    fn a_plain_chain_groups_each_conv_with_what_follows() {
        let types = [
            "Conv", "Relu", "MaxPool", "Conv", "Relu", "Conv", "Relu", "MaxPool", "Flatten",
            "Gemm", "Relu", "Gemm", "Softmax",
        ];
        let layers: Vec<LayerInfo> = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let p: Vec<usize> = if i == 0 { vec![] } else { vec![i - 1] };
                layer(&format!("n{i}"), t, &p)
            })
            .collect();
        let n = layers.len();
        assert_eq!(
            structural_groups(&layers, 0..n),
            vec![0..3, 3..5, 5..9, 9..11, 11..13]
        );
        let names: Vec<String> = (structural_blocks(&layers, 0..n).into_iter())
            .map(|(_, name)| name)
            .collect();
        // "n0", "n1", "n2" share only "n": too short, so the kind and a count.
        assert_eq!(names, vec!["conv 1", "conv 2", "conv 3", "fc 1", "fc 2"]);
    }
}
