//! Which part of the input list this process scans: `--shard I/N`, or the index and count
//! a scheduler puts in the environment (Slurm arrays, Kubernetes Indexed Jobs, AWS Batch
//! array jobs, Cloud Run jobs). Shard `i` of `n` takes the contiguous block
//! `⌊i·len/n⌋ .. ⌊(i+1)·len/n⌋` of the sorted list (a Slurm task is numbered from the
//! array's MIN in steps of its STEP, so `--array=1-N` works too), so merged shards list the images in the
//! same order as a single process.

use super::{Result, ScanError};

/// Shard `index` of `count` (index from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(ScanError::Shard(format!(
                "shard {index} of {count}: the index must be in 0..{count}"
            )));
        }
        Ok(Self { index, count })
    }

    /// Parses `I/N`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || ScanError::Shard(format!("`{s}`: expected I/N, e.g. 3/16 (I from 0)"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        Self::new(
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        )
    }

    /// Positions `first..end` of this shard in a list of `len` items.
    pub fn range(&self, len: usize) -> std::ops::Range<usize> {
        let at = |i: usize| ((i as u128 * len as u128) / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// `shard-0003-of-0016`.
    pub fn dir_name(&self) -> String {
        format!("shard-{:04}-of-{:04}", self.index, self.count)
    }
}

/// Where the shard came from, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedShard {
    pub shard: Shard,
    pub source: &'static str,
}

/// The shard from `--shard`, else from the environment (`env` looks a variable up; `shards`
/// is `--shards N`, needed where the scheduler gives no count). `None`: the whole list.
pub fn resolve(
    flag: Option<&str>,
    shards: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<ResolvedShard>> {
    if let Some(s) = flag {
        let shard = Shard::parse(s)?;
        if let Some(n) = shards.filter(|&n| n != shard.count) {
            return Err(ScanError::Shard(format!(
                "--shard {s} and --shards {n} disagree"
            )));
        }
        return Ok(Some(ResolvedShard {
            shard,
            source: "--shard",
        }));
    }
    let number =
        |var: &str| -> Result<Option<usize>> {
            match env(var) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    ScanError::Shard(format!("{var}={v} is not a non-negative integer"))
                }),
            }
        };
    // (index variable, count variable or None where the scheduler has none, name)
    const SCHEDULERS: [(&str, Option<&str>, &str); 4] = [
        (
            "SLURM_ARRAY_TASK_ID",
            Some("SLURM_ARRAY_TASK_COUNT"),
            "Slurm array",
        ),
        ("JOB_COMPLETION_INDEX", None, "Kubernetes Indexed Job"),
        ("AWS_BATCH_JOB_ARRAY_INDEX", None, "AWS Batch array job"),
        (
            "CLOUD_RUN_TASK_INDEX",
            Some("CLOUD_RUN_TASK_COUNT"),
            "Cloud Run job",
        ),
    ];
    for (index_var, count_var, source) in SCHEDULERS {
        let Some(mut index) = number(index_var)? else {
            continue;
        };
        if index_var == "SLURM_ARRAY_TASK_ID" {
            // `--array=1-3` or `0-6:2` number tasks from MIN in steps of STEP.
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            let offset = index.checked_sub(min).filter(|o| o % step == 0);
            index = offset.map(|o| o / step).ok_or_else(|| {
                ScanError::Shard(format!(
                    "SLURM_ARRAY_TASK_ID={index} is not MIN + k·STEP ({min} + k·{step}): \
                     submit the array as --array=0-(N-1)"
                ))
            })?;
        }
        let from_env = match count_var {
            Some(var) => number(var)?,
            None => None,
        };
        let count = match (shards, from_env) {
            (Some(n), Some(m)) if n != m => {
                return Err(ScanError::Shard(format!(
                    "--shards {n} disagrees with the {source}'s count {m}"
                )));
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => {
                return Err(ScanError::Shard(format!(
                    "{index_var}={index} is set ({source}) but not the shard count: pass \
                     --shards N"
                )));
            }
        };
        return Ok(Some(ResolvedShard {
            shard: Shard::new(index, count)?,
            source,
        }));
    }
    match shards {
        Some(_) => Err(ScanError::Shard(
            "--shards N needs --shard I/N or a scheduler's index variable \
             (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX, \
             CLOUD_RUN_TASK_INDEX)"
                .into(),
        )),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn ranges_cover_the_list_once_in_order() {
        for len in [0, 1, 5, 17, 100] {
            for count in [1, 3, 16] {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard::new(index, count).unwrap().range(len);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= len.div_ceil(count));
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn flag_and_schedulers() {
        let none = env(&[]);
        assert_eq!(resolve(None, None, &none).unwrap(), None);
        let s = resolve(Some("3/16"), None, &none).unwrap().unwrap();
        assert_eq!((s.shard.index, s.shard.count), (3, 16));
        assert_eq!(s.shard.dir_name(), "shard-0003-of-0016");
        assert!(resolve(Some("16/16"), None, &none).is_err());
        assert!(resolve(Some("3"), None, &none).is_err());
        assert!(resolve(Some("1/4"), Some(5), &none).is_err());

        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        let s = resolve(None, None, &slurm).unwrap().unwrap();
        assert_eq!(
            (s.shard.index, s.shard.count, s.source),
            (2, 3, "Slurm array")
        );
        assert!(resolve(None, Some(4), &slurm).is_err());

        let k8s = env(&[("JOB_COMPLETION_INDEX", "5")]);
        assert!(
            resolve(None, None, &k8s).is_err(),
            "no count: needs --shards"
        );
        let s = resolve(None, Some(8), &k8s).unwrap().unwrap();
        assert_eq!((s.shard.index, s.shard.count), (5, 8));
        assert!(resolve(None, Some(5), &k8s).is_err(), "index ≥ count");

        let aws = env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "0")]);
        assert_eq!(
            resolve(None, Some(2), &aws).unwrap().unwrap().shard.index,
            0
        );
        let run = env(&[("CLOUD_RUN_TASK_INDEX", "1"), ("CLOUD_RUN_TASK_COUNT", "2")]);
        assert_eq!(resolve(None, None, &run).unwrap().unwrap().shard.count, 2);
        assert!(resolve(None, None, env(&[("JOB_COMPLETION_INDEX", "x")])).is_err());
        assert!(resolve(None, Some(2), &none).is_err());
    }
}
