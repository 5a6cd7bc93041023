//! `convlens scan merge`: shard directories into one scan directory. Top-k lists merge
//! exactly (the shards hold disjoint, ordered blocks of the image list, so offsetting each
//! shard's image indices reproduces the single-process ranking, ties included); statistics
//! merge with Chan et al.'s parallel formulas; crops are copied from the shard that holds
//! each entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::accumulate::{LayerScan, TopEntry, insert_top};
use super::format::{self, Manifest, TopkEntry, TopkFile};
use super::run::{publish, write_json, write_topk};
use super::shard::Shard;
use super::{Result, ScanError, io_err};

/// What a merge did.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSummary {
    pub shards: usize,
    pub images: usize,
    pub missing: Vec<usize>,
}

/// A top entry of one shard, renumbered into the merged image list, with the shard (index
/// into the sorted shards) and its rank there (from 1), which name its crop; keyed by
/// (layer, filter from 0).
type Candidate = (TopkEntry, usize, usize);

/// One shard's directory and what it says.
struct ShardDir {
    dir: PathBuf,
    manifest: Manifest,
    index: usize,
}

/// Merges `dirs` (shards of one scan) into `out`. Missing shards are an error unless
/// `allow_missing`, which records them in `scan.json`.
pub fn merge(dirs: &[PathBuf], out: &Path, allow_missing: bool) -> Result<MergeSummary> {
    if dirs.is_empty() {
        return Err(ScanError::Merge("no shard directories given".into()));
    }
    let mut shards = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let manifest = format::read_manifest(dir)?;
        let Some(info) = manifest.shard else {
            return Err(ScanError::Merge(format!(
                "{} is not a shard (its scan.json has no `shard`)",
                dir.display()
            )));
        };
        shards.push(ShardDir {
            dir: dir.clone(),
            index: info.index,
            manifest,
        });
    }
    shards.sort_by_key(|s| s.index);
    let first = &shards[0];
    let count = first.manifest.shard.map_or(0, |s| s.count);
    for s in &shards[1..] {
        let differs = |what: &str| {
            Err(ScanError::Merge(format!(
                "{} and {} are not shards of one scan: their {what} differ",
                first.dir.display(),
                s.dir.display()
            )))
        };
        let (a, b) = (&first.manifest, &s.manifest);
        if a.model != b.model {
            return differs("models");
        }
        if a.layers != b.layers {
            return differs("layers");
        }
        if a.top_k != b.top_k || a.settings != b.settings {
            return differs("settings (--top-k, --crop-size, preprocessing or input list)");
        }
        if b.shard.map(|x| x.count) != Some(count) {
            return differs("shard counts");
        }
    }
    for pair in shards.windows(2) {
        if pair[0].index == pair[1].index {
            return Err(ScanError::Merge(format!(
                "shard {} is given twice: {} and {}",
                pair[0].index,
                pair[0].dir.display(),
                pair[1].dir.display()
            )));
        }
    }
    let total = first.manifest.settings.inputs_total;
    for s in &shards {
        let info = s.manifest.shard.unwrap_or(format::ShardInfo {
            index: 0,
            count: 0,
            first: 0,
            end: 0,
        });
        let expected = Shard::new(info.index, info.count)?.range(total);
        if (info.first..info.end) != expected {
            return Err(ScanError::Merge(format!(
                "{} covers images {}..{}, but shard {} of {count} is {}..{} (overlapping or \
                 foreign shard)",
                s.dir.display(),
                info.first,
                info.end,
                info.index,
                expected.start,
                expected.end
            )));
        }
    }
    let missing: Vec<usize> = (0..count)
        .filter(|i| !shards.iter().any(|s| s.index == *i))
        .collect();
    if !missing.is_empty() && !allow_missing {
        return Err(ScanError::Merge(format!(
            "{} of {count} shards are missing: {} (pass --allow-missing to merge without them)",
            missing.len(),
            missing
                .iter()
                .map(|i| Shard { index: *i, count }.dir_name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }

    let top_k = first.manifest.top_k;
    let layer_infos = first.manifest.layers.clone();
    let mut merged: Vec<LayerScan> = (layer_infos.iter())
        .map(|l| LayerScan::new(l.name.clone(), l.shape))
        .collect();
    let mut origins: BTreeMap<(usize, usize), Vec<Candidate>> = BTreeMap::new();
    let mut images: Vec<String> = Vec::new();
    let mut skipped = Vec::new();
    for (si, s) in shards.iter().enumerate() {
        let offset = images.len() as u64;
        let stats = format::read_stats_csv(&s.dir.join(format::STATS_FILE), &layer_infos)?;
        let topk = format::read_topk(&s.dir)?;
        format::check_topk(&s.dir, &topk, &s.manifest)?;
        for ((layer, filters), (li, tl)) in merged
            .iter_mut()
            .zip(stats)
            .zip(topk.layers.iter().enumerate())
        {
            for (a, b) in layer.filters.iter_mut().zip(&filters) {
                a.merge(b);
            }
            for (k, f) in tl.filters.iter().enumerate() {
                let list = origins.entry((li, k)).or_default();
                for (rank, e) in f.top.iter().enumerate() {
                    let global = TopkEntry {
                        image: e.image + offset,
                        ..*e
                    };
                    list.push((global, si, rank + 1));
                }
            }
        }
        images.extend(s.manifest.images.iter().cloned());
        skipped.extend(s.manifest.skipped.iter().cloned());
    }
    // Rank each filter's candidates exactly as the single-process scan does.
    let mut topk = TopkFile {
        layers: (layer_infos.iter())
            .map(|l| format::TopkLayer {
                name: l.name.clone(),
                filters: Vec::new(),
            })
            .collect(),
    };
    let mut copies: Vec<(PathBuf, usize, usize, usize)> = Vec::new(); // (src, layer, filter, rank)
    for (li, layer) in merged.iter_mut().enumerate() {
        for k in 0..layer.shape[0] {
            let candidates = origins.remove(&(li, k)).unwrap_or_default();
            let mut best: Vec<TopEntry> = Vec::new();
            for (e, _, _) in &candidates {
                insert_top(&mut best, e.top_entry(), top_k);
            }
            let mut entries = Vec::with_capacity(best.len());
            for (rank, b) in best.iter().enumerate() {
                let Some((e, si, src_rank)) =
                    candidates.iter().find(|(e, _, _)| e.image == b.image)
                else {
                    continue;
                };
                entries.push(*e);
                let src =
                    format::example_path(&shards[*si].dir, &layer_infos[li].stem, k + 1, *src_rank);
                copies.push((src, li, k + 1, rank + 1));
            }
            topk.layers[li].filters.push(format::TopkFilter {
                filter: k + 1,
                top: entries,
            });
        }
    }

    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let work = out.join(".partial-merge");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io_err(&work))?;
    }
    if first.manifest.settings.crop_size > 0 {
        for l in &layer_infos {
            let dir = work.join(format::EXAMPLES_DIR).join(&l.stem);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        for (src, li, filter, rank) in copies {
            // A hard link of the shard's crop (shards are published whole and never written
            // in place, so the merged file keeps its bytes); a copy across file systems.
            let dest = format::example_path(&work, &layer_infos[li].stem, filter, rank);
            if std::fs::hard_link(&src, &dest).is_err()
                // An entry whose unit reads no pixel has no crop in its shard either.
                && src.exists()
            {
                std::fs::copy(&src, &dest).map_err(io_err(&src))?;
            }
        }
    } else {
        std::fs::create_dir_all(&work).map_err(io_err(&work))?;
    }
    let manifest = Manifest {
        images,
        skipped,
        shard: None,
        missing_shards: missing.clone(),
        ..first.manifest.clone()
    };
    write_topk(&work.join(format::TOPK_FILE), &topk)?;
    let csv = format::stats_csv(&merged);
    crate::atomic_file::write_atomic(&work.join(format::STATS_FILE), csv.as_bytes(), false)
        .map_err(io_err(&work.join(format::STATS_FILE)))?;
    write_json(&work.join(format::MANIFEST_FILE), &manifest)?;
    publish(&work, out, false)?;
    Ok(MergeSummary {
        shards: shards.len(),
        images: manifest.images.len(),
        missing,
    })
}
