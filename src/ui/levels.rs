//! The architecture's levels (G, `--collapse-blocks`): a tree of nested blocks over the layer
//! chain. Names give the levels where they carry a path (`stage3/block17/conv1` → stage →
//! block → layer; `/layer1/layer1.0/conv1/Conv`; `layer1.0.conv1`); the graph's structure
//! ([`super::blocks`]) gives them where names give none or a named block is a long flat run,
//! and runs of same-shaped blocks become stages where one level would be too wide to browse.
//! The collapsed architecture shows the top level; a click on a block opens it in place (its
//! children take its place in the chain) and U closes the innermost open block again. Pure
//! functions of the layer list, unit-tested.

use std::collections::BTreeSet;
use std::ops::Range;

use super::LayerInfo;
use super::blocks::{self, MAX_NAMED_BLOCK};

/// One entry of a level: a single layer, or a block (an index into [`LevelTree::blocks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Layer(usize),
    Block(usize),
}

/// A block: consecutive layers, named, with its own level below it.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// The layers it covers (what its children cover, together and in order).
    pub layers: Range<usize>,
    pub name: String,
    /// The block it is part of (`None` at the top level).
    pub parent: Option<usize>,
    pub children: Vec<Child>,
}

/// Every level of a model's architecture: the top level and, below each block, its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelTree {
    pub blocks: Vec<Block>,
    /// The top level, covering every layer once, in order.
    pub top: Vec<Child>,
}

/// One node of the architecture as drawn: a layer, or a closed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchItem {
    pub layers: Range<usize>,
    /// The block this node stands for (`None`: a single layer).
    pub block: Option<usize>,
}

impl ArchItem {
    pub fn layer(i: usize) -> Self {
        Self {
            layers: i..i + 1,
            block: None,
        }
    }
}

/// A level wider than this is grouped further, by output shape, where that shortens it.
const MAX_LEVEL_WIDTH: usize = 64;

impl LevelTree {
    /// The levels of `layers` (see the module doc).
    pub fn of(layers: &[LayerInfo]) -> Self {
        let paths: Vec<Vec<usize>> = layers.iter().map(|l| name_path(&l.name)).collect();
        let mut tree = Self::default();
        let top = tree.named_level(layers, &paths, 0..layers.len(), 0, None);
        tree.top = if top.iter().any(|c| matches!(c, Child::Block(_))) {
            top
        } else {
            // Names carry no blocks (`conv1`, `resnetv17_stage1_conv0`): the structure's.
            tree.structural(layers, 0..layers.len(), None)
                .unwrap_or(top)
        };
        let top = std::mem::take(&mut tree.top);
        tree.top = tree.by_shape(layers, top, None);
        tree
    }

    /// The architecture's nodes with the blocks in `open` opened: each closed block one
    /// node, each layer outside closed blocks one node, in chain order.
    pub fn items(&self, open: &BTreeSet<usize>) -> Vec<ArchItem> {
        let mut items = Vec::new();
        self.push_items(&self.top, open, &mut items);
        items
    }

    fn push_items(&self, level: &[Child], open: &BTreeSet<usize>, items: &mut Vec<ArchItem>) {
        for &child in level {
            match child {
                Child::Layer(i) => items.push(ArchItem::layer(i)),
                Child::Block(b) if open.contains(&b) => {
                    self.push_items(&self.blocks[b].children, open, items);
                }
                Child::Block(b) => items.push(ArchItem {
                    layers: self.blocks[b].layers.clone(),
                    block: Some(b),
                }),
            }
        }
    }

    /// The blocks that contain `layer`, outermost first.
    pub fn path_to(&self, layer: usize) -> Vec<usize> {
        let mut path = Vec::new();
        let mut level = &self.top;
        while let Some(b) = level.iter().find_map(|&c| match c {
            Child::Block(b) if self.blocks[b].layers.contains(&layer) => Some(b),
            _ => None,
        }) {
            path.push(b);
            level = &self.blocks[b].children;
        }
        path
    }

    /// The innermost open block around `layer`, if any.
    pub fn innermost_open(&self, layer: usize, open: &BTreeSet<usize>) -> Option<usize> {
        self.path_to(layer)
            .into_iter()
            .rev()
            .find(|b| open.contains(b))
    }

    /// How many levels the deepest layer sits below the top.
    pub fn depth(&self) -> usize {
        let depth_of = |mut b: usize| {
            let mut d = 1;
            while let Some(p) = self.blocks[b].parent {
                (b, d) = (p, d + 1);
            }
            d
        };
        (0..self.blocks.len()).map(depth_of).max().unwrap_or(0)
    }

    fn add(&mut self, layers: Range<usize>, name: String, parent: Option<usize>) -> usize {
        self.blocks.push(Block {
            layers,
            name,
            parent,
            children: Vec::new(),
        });
        self.blocks.len() - 1
    }

    /// The level of `range` from the names' path keys at `depth` and below: runs of layers
    /// sharing a key are blocks (a run that is the whole range is no level of its own; a run
    /// of one layer is the layer).
    fn named_level(
        &mut self,
        layers: &[LayerInfo],
        paths: &[Vec<usize>],
        range: Range<usize>,
        depth: usize,
        parent: Option<usize>,
    ) -> Vec<Child> {
        let key = |i: usize| paths[i].get(depth).map(|&end| &layers[i].name[..end]);
        let mut runs: Vec<Range<usize>> = Vec::new();
        for i in range.clone() {
            match runs.last_mut() {
                Some(run) if key(i).is_some() && key(i) == key(run.start) => run.end = i + 1,
                _ => runs.push(i..i + 1),
            }
        }
        if runs.len() == 1 && range.len() > 1 && key(range.start).is_some() {
            return self.named_level(layers, paths, range, depth + 1, parent);
        }
        let mut level = Vec::with_capacity(runs.len());
        for run in runs {
            if run.len() == 1 {
                level.push(Child::Layer(run.start));
                continue;
            }
            let name = key(run.start).map_or("", last_segment).to_string();
            let b = self.add(run.clone(), name, parent);
            let mut children = self.named_level(layers, paths, run.clone(), depth + 1, Some(b));
            // A long flat run under one name (a whole stage of unnamed blocks): the
            // structure's blocks inside it.
            if run.len() > MAX_NAMED_BLOCK && children.iter().all(|c| matches!(c, Child::Layer(_)))
            {
                children = self.structural(layers, run, Some(b)).unwrap_or(children);
            }
            let children = self.by_shape(layers, children, Some(b));
            self.blocks[b].children = children;
            level.push(Child::Block(b));
        }
        level
    }

    /// The structure's blocks over `range` ([`blocks::structural_groups`]) as one level, or
    /// `None` where they do not shorten it.
    fn structural(
        &mut self,
        layers: &[LayerInfo],
        range: Range<usize>,
        parent: Option<usize>,
    ) -> Option<Vec<Child>> {
        let named = blocks::structural_blocks(layers, range.clone());
        let groups: Vec<Range<usize>> = named.iter().map(|(r, _)| r.clone()).collect();
        if !blocks::shortens(&groups, range.len()) {
            return None;
        }
        let level = named
            .into_iter()
            .map(|(r, name)| {
                if r.len() == 1 {
                    return Child::Layer(r.start);
                }
                let b = self.add(r.clone(), name, parent);
                self.blocks[b].children = r.map(Child::Layer).collect();
                Child::Block(b)
            })
            .collect();
        Some(level)
    }

    /// A level wider than [`MAX_LEVEL_WIDTH`] with runs of blocks of one output shape (the
    /// stages of a deep residual stack) gets a level of stages above them.
    fn by_shape(
        &mut self,
        layers: &[LayerInfo],
        level: Vec<Child>,
        parent: Option<usize>,
    ) -> Vec<Child> {
        if level.len() <= MAX_LEVEL_WIDTH {
            return level;
        }
        let spans: Vec<Range<usize>> = (level.iter())
            .map(|c| match *c {
                Child::Layer(i) => i..i + 1,
                Child::Block(b) => self.blocks[b].layers.clone(),
            })
            .collect();
        let shape = |k: usize| &layers[spans[k].end - 1].output_shape;
        let mut runs: Vec<Range<usize>> = Vec::new();
        for k in 0..level.len() {
            match runs.last_mut() {
                Some(run) if shape(run.start) == shape(k) => run.end = k + 1,
                _ => runs.push(k..k + 1),
            }
        }
        if !blocks::shortens(&runs, level.len()) {
            return level;
        }
        let mut stage = 0;
        let mut grouped = Vec::with_capacity(runs.len());
        for run in runs {
            if run.len() == 1 {
                grouped.push(level[run.start]);
                continue;
            }
            stage += 1;
            let (first, last) = (spans[run.start].start, spans[run.end - 1].end);
            let dims = layers[last - 1]
                .output_shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("×");
            let b = self.add(first..last, format!("stage {stage} ({dims})"), parent);
            for &c in &level[run.clone()] {
                if let Child::Block(child) = c {
                    self.blocks[child].parent = Some(b);
                }
            }
            self.blocks[b].children = level[run].to_vec();
            grouped.push(Child::Block(b));
        }
        grouped
    }
}

/// Where a layer name's path keys end: `stage3/block17/conv1` → the ends of `stage3` and
/// `stage3/block17` (the last segment is the layer itself); names without `/` split at `.`
/// (`layer1.0.conv1` → `layer1`, `layer1.0`). A leading `/` is part of no key.
pub fn name_path(name: &str) -> Vec<usize> {
    let lead = name.len() - name.trim_start_matches('/').len();
    let body = &name[lead..];
    let sep = if body.contains('/') { '/' } else { '.' };
    body.match_indices(sep)
        .map(|(i, _)| lead + i)
        .filter(|&end| end > lead)
        .collect()
}

/// A key's own name: its last `/` segment without the leading `/`.
fn last_segment(key: &str) -> &str {
    key.trim_start_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(key)
}

#[cfg(test)]
mod tests;
