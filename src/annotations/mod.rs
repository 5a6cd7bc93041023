//! Filter annotations: the user's good/bad marks per layer and filter. They belong to one
//! model (identified by its ONNX file's fingerprint), live in one small JSON file that is
//! rewritten atomically on every change (a crash or kill -9 never loses or tears it), load
//! on start, and export as CSV or JSON. The viewer's clicks arrive here through
//! [`crate::ui::state`]; the architecture canvas draws [`Annotations::counts`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Tag of the file format, checked on load.
pub const FORMAT: &str = "convlens-annotations/1";

/// A user's judgement of one filter. "No mark" is the absence of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    Good,
    Bad,
}

impl Mark {
    pub fn label(self) -> &'static str {
        match self {
            Mark::Good => "good",
            Mark::Bad => "bad",
        }
    }

    /// Parses `good`, `bad` (Some) or `clear`/`none` (None).
    pub fn parse(s: &str) -> Result<Option<Mark>> {
        match s.trim().to_ascii_lowercase().as_str() {
            "good" => Ok(Some(Mark::Good)),
            "bad" => Ok(Some(Mark::Bad)),
            "clear" | "none" => Ok(None),
            other => Err(AnnotationError::UnknownMark(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    #[error("cannot read or write annotations {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("annotations file {path} is malformed ({detail}); it was left untouched")]
    Malformed { path: String, detail: String },
    #[error(
        "annotations file {path} belongs to another model (fingerprint {found}, this model is {expected}); it was left untouched"
    )]
    OtherModel {
        path: String,
        expected: String,
        found: String,
    },
    #[error("unknown mark '{0}' (expected good, bad or clear)")]
    UnknownMark(String),
    #[error("no place to keep annotations: set CONVLENS_DATA_DIR, XDG_DATA_HOME or HOME")]
    NoDataDir,
}

pub type Result<T, E = AnnotationError> = std::result::Result<T, E>;

/// Marks of one layer as stored: filter numbers from 1 (as in the viewer and the exported
/// PNG names), sorted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct LayerFile {
    #[serde(default)]
    good: Vec<usize>,
    #[serde(default)]
    bad: Vec<usize>,
}

/// The file: `{"format", "model", "fingerprint", "layers": {name: {"good": [..], "bad": [..]}}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AnnotationFile {
    format: String,
    model: String,
    fingerprint: String,
    #[serde(default)]
    layers: BTreeMap<String, LayerFile>,
}

/// All marks of one model, by layer name and filter index (from 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub model: String,
    pub fingerprint: String,
    layers: BTreeMap<String, BTreeMap<usize, Mark>>,
}

impl Annotations {
    pub fn new(model: impl Into<String>, fingerprint: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            fingerprint: fingerprint.into(),
            layers: BTreeMap::new(),
        }
    }

    pub fn mark(&self, layer: &str, filter: usize) -> Option<Mark> {
        self.layers.get(layer)?.get(&filter).copied()
    }

    /// Sets (or with `None` clears) a mark. Returns whether anything changed.
    pub fn set(&mut self, layer: &str, filter: usize, mark: Option<Mark>) -> bool {
        if self.mark(layer, filter) == mark {
            return false;
        }
        match mark {
            Some(m) => {
                self.layers
                    .entry(layer.to_string())
                    .or_default()
                    .insert(filter, m);
            }
            None => {
                if let Some(l) = self.layers.get_mut(layer) {
                    l.remove(&filter);
                    if l.is_empty() {
                        self.layers.remove(layer);
                    }
                }
            }
        }
        true
    }

    /// `(good, bad)` counts of a layer.
    pub fn counts(&self, layer: &str) -> (usize, usize) {
        self.layers.get(layer).map_or((0, 0), |l| {
            let good = l.values().filter(|&&m| m == Mark::Good).count();
            (good, l.len() - good)
        })
    }

    /// Every mark as `(layer, filter from 0, mark)`, layers by name, filters ascending.
    pub fn iter(&self) -> impl Iterator<Item = (&str, usize, Mark)> {
        self.layers
            .iter()
            .flat_map(|(l, m)| m.iter().map(move |(&k, &mark)| (l.as_str(), k, mark)))
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The JSON file's text (filters numbered from 1).
    pub fn to_json(&self) -> String {
        let layers = self
            .layers
            .iter()
            .map(|(name, marks)| {
                let pick = |want: Mark| {
                    marks
                        .iter()
                        .filter(|&(_, &m)| m == want)
                        .map(|(&k, _)| k + 1)
                        .collect()
                };
                let file = LayerFile {
                    good: pick(Mark::Good),
                    bad: pick(Mark::Bad),
                };
                (name.clone(), file)
            })
            .collect();
        let file = AnnotationFile {
            format: FORMAT.to_string(),
            model: self.model.clone(),
            fingerprint: self.fingerprint.clone(),
            layers,
        };
        // Serialising plain strings and integers cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }

    /// Parses the JSON file's text; `path` names it in errors.
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        let malformed = |detail: String| AnnotationError::Malformed {
            path: path.to_string(),
            detail,
        };
        let file: AnnotationFile =
            serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
        if file.format != FORMAT {
            return Err(malformed(format!(
                "format '{}', expected '{FORMAT}'",
                file.format
            )));
        }
        let mut a = Self::new(file.model, file.fingerprint);
        for (layer, marks) in file.layers {
            for (list, mark) in [(&marks.good, Mark::Good), (&marks.bad, Mark::Bad)] {
                for &n in list {
                    if n == 0 {
                        return Err(malformed(format!(
                            "layer '{layer}': filter numbers start at 1"
                        )));
                    }
                    if a.mark(&layer, n - 1).is_some_and(|m| m != mark) {
                        return Err(malformed(format!(
                            "layer '{layer}': filter {n} is marked both good and bad"
                        )));
                    }
                    a.set(&layer, n - 1, Some(mark));
                }
            }
        }
        Ok(a)
    }

    /// CSV: `layer,filter,mark` with filters numbered from 1; names quoted as RFC 4180 needs.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("layer,filter,mark\n");
        for (layer, k, mark) in self.iter() {
            out.push_str(&format!(
                "{},{},{}\n",
                csv_field(layer),
                k + 1,
                mark.label()
            ));
        }
        out
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Annotations bound to their file: every change is saved at once. A store without a file
/// (see [`AnnotationStore::in_memory`]) keeps marks for the session only.
#[derive(Debug)]
pub struct AnnotationStore {
    path: Option<PathBuf>,
    pub annotations: Annotations,
}

impl AnnotationStore {
    /// Opens the store at `path` for the model (`name`, `fingerprint`): loads the file if it
    /// exists (refusing one that is malformed or belongs to another model, so it is never
    /// overwritten), else starts empty; nothing is written until the first change.
    pub fn open(path: &Path, name: &str, fingerprint: &str) -> Result<Self> {
        let shown = path.display().to_string();
        crate::atomic_file::remove_stale_temps(path);
        let annotations = match std::fs::read_to_string(path) {
            Ok(text) => {
                let a = Annotations::from_json(&text, &shown)?;
                if a.fingerprint != fingerprint {
                    return Err(AnnotationError::OtherModel {
                        path: shown,
                        expected: fingerprint.to_string(),
                        found: a.fingerprint,
                    });
                }
                a
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Annotations::new(name, fingerprint)
            }
            Err(source) => {
                return Err(AnnotationError::Io {
                    path: shown,
                    error: source,
                });
            }
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            annotations,
        })
    }

    /// A store that saves nothing (used when the file cannot be opened; the viewer says so).
    pub fn in_memory(name: &str, fingerprint: &str) -> Self {
        Self {
            path: None,
            annotations: Annotations::new(name, fingerprint),
        }
    }

    /// The file every change is saved to (None: kept in memory only).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Sets a mark and, when it changed, saves the file durably before returning.
    pub fn set(&mut self, layer: &str, filter: usize, mark: Option<Mark>) -> Result<bool> {
        let before = self.annotations.mark(layer, filter);
        if !self.annotations.set(layer, filter, mark) {
            return Ok(false);
        }
        if let Err(e) = self.save() {
            // Keep memory and disk in agreement: the change did not happen.
            self.annotations.set(layer, filter, before);
            return Err(e);
        }
        Ok(true)
    }

    /// Sets several marks with one save.
    pub fn set_many(&mut self, marks: &[(String, usize, Option<Mark>)]) -> Result<usize> {
        let before = self.annotations.clone();
        let changed = marks
            .iter()
            .filter(|(l, k, m)| self.annotations.set(l, *k, *m))
            .count();
        if changed > 0
            && let Err(e) = self.save()
        {
            self.annotations = before;
            return Err(e);
        }
        Ok(changed)
    }

    fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| AnnotationError::Io {
            path: path.display().to_string(),
            error: source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        crate::atomic_file::write_atomic(path, self.annotations.to_json().as_bytes(), true)
            .map_err(io)
    }
}

/// Where a model's annotations live by default:
/// `<data dir>/annotations/<model name>-<fingerprint>.json`, the data dir being
/// `$CONVLENS_DATA_DIR`, else `$XDG_DATA_HOME/convlens`, else `~/.local/share/convlens`.
pub fn default_path(model_name: &str, fingerprint: &str) -> Result<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let data = env("CONVLENS_DATA_DIR")
        .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("convlens")))
        .or_else(|| env("HOME").map(|h| h.join(".local/share/convlens")))
        .ok_or(AnnotationError::NoDataDir)?;
    let stem = crate::format::stems::safe_stem(model_name);
    Ok(data
        .join("annotations")
        .join(format!("{stem}-{fingerprint}.json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_and_count() {
        let mut a = Annotations::new("m", "f");
        assert!(a.set("conv1", 3, Some(Mark::Good)));
        assert!(!a.set("conv1", 3, Some(Mark::Good)), "same mark again");
        assert!(a.set("conv1", 4, Some(Mark::Bad)));
        assert!(a.set("conv1", 3, Some(Mark::Bad)));
        assert_eq!(a.counts("conv1"), (0, 2));
        assert!(a.set("conv1", 3, None));
        assert!(a.set("conv1", 4, None));
        assert!(a.is_empty(), "clearing the last mark drops the layer");
        assert!(!a.set("conv1", 4, None));
    }

    #[test]
    fn json_and_csv_round_trip_with_filters_from_one() {
        let mut a = Annotations::new("net", "00ff");
        a.set("conv,1", 0, Some(Mark::Good));
        a.set("conv,1", 9, Some(Mark::Bad));
        a.set("b\"x", 2, Some(Mark::Good));
        let json = a.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["layers"]["conv,1"]["good"], serde_json::json!([1]));
        assert_eq!(v["layers"]["conv,1"]["bad"], serde_json::json!([10]));
        assert_eq!(Annotations::from_json(&json, "t").unwrap(), a);
        assert_eq!(
            a.to_csv(),
            "layer,filter,mark\n\"b\"\"x\",3,good\n\"conv,1\",1,good\n\"conv,1\",10,bad\n"
        );
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        for (text, why) in [
            ("{", "EOF"),
            (r#"{"format":"x","model":"m","fingerprint":"f"}"#, "format"),
            (
                r#"{"format":"convlens-annotations/1","model":"m","fingerprint":"f","layers":{"c":{"good":[0]}}}"#,
                "start at 1",
            ),
            (
                r#"{"format":"convlens-annotations/1","model":"m","fingerprint":"f","layers":{"c":{"good":[2],"bad":[2]}}}"#,
                "both",
            ),
        ] {
            let e = Annotations::from_json(text, "a.json")
                .unwrap_err()
                .to_string();
            assert!(e.contains("a.json") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn the_store_saves_every_change_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/notes.json");
        let mut s = AnnotationStore::open(&path, "m", "f1").unwrap();
        assert!(!path.exists(), "nothing written before a change");
        assert!(s.set("conv1", 2, Some(Mark::Good)).unwrap());
        let n = s
            .set_many(&[
                ("conv2".into(), 0, Some(Mark::Bad)),
                ("conv1".into(), 2, Some(Mark::Good)),
            ])
            .unwrap();
        assert_eq!(n, 1);
        let again = AnnotationStore::open(&path, "m", "f1").unwrap();
        assert_eq!(again.annotations, s.annotations);
        let other = AnnotationStore::open(&path, "m", "f2").unwrap_err();
        assert!(matches!(other, AnnotationError::OtherModel { .. }));
        // A malformed file is refused and stays as it was.
        std::fs::write(&path, "garbage").unwrap();
        assert!(AnnotationStore::open(&path, "m", "f1").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
    }

    #[test]
    fn marks_parse() {
        assert_eq!(Mark::parse("GOOD").unwrap(), Some(Mark::Good));
        assert_eq!(Mark::parse("clear").unwrap(), None);
        assert!(Mark::parse("meh").is_err());
    }
}
