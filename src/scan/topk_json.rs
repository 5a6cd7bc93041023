//! `topk.json`'s bytes (format in [`super::format`]): indented JSON for the file, its
//! layers and their filter lists, one compact line per filter. Written by hand, layer by
//! layer on the cores: through serde_json's `Serializer` with a custom `Formatter` it took
//! 44 ms on one core for EfficientNet-Lite0's 21,008 filters (12.7 MB); the tests hold it
//! to that serde writer byte for byte.

use super::format::{TopkEntry, TopkFile, TopkFilter, TopkLayer};

/// Nesting levels of `topk.json` written over several lines: the file, its layers, their
/// filter lists; each filter (with its top entries) is one line. A quarter of the size of
/// fully indented JSON, and a filter stays one `grep` away.
pub const TOPK_LINE_LEVELS: usize = 4;

/// `topk.json`'s bytes: JSON indented down to [`TOPK_LINE_LEVELS`] (as serde_json's
/// `PrettyFormatter` indents), each layer written on its own core.
pub fn topk_json(topk: &TopkFile) -> serde_json::Result<Vec<u8>> {
    use rayon::prelude::*;
    let layers: Vec<Vec<u8>> = (topk.layers.par_iter())
        .map(layer_json)
        .collect::<serde_json::Result<_>>()?;
    let mut out = Vec::with_capacity(layers.iter().map(|l| l.len() + 8).sum::<usize>() + 32);
    out.extend_from_slice(b"{\n  \"layers\": [");
    for (i, layer) in layers.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n    " } else { b",\n    " });
        out.extend_from_slice(layer);
    }
    out.extend_from_slice(if layers.is_empty() {
        b"]\n}\n"
    } else {
        b"\n  ]\n}\n"
    });
    Ok(out)
}

/// One layer's object, written from inside `{"layers": [` (two levels open).
fn layer_json(layer: &TopkLayer) -> serde_json::Result<Vec<u8>> {
    // ~75 bytes per entry.
    let entries: usize = layer.filters.iter().map(|f| f.top.len()).sum();
    let mut out = Vec::with_capacity(64 + 32 * layer.filters.len() + 80 * entries);
    out.extend_from_slice(b"{\n      \"name\": ");
    serde_json::to_writer(&mut out, &layer.name)?;
    out.extend_from_slice(b",\n      \"filters\": [");
    for (i, filter) in layer.filters.iter().enumerate() {
        out.extend_from_slice(if i == 0 {
            b"\n        "
        } else {
            b",\n        "
        });
        filter_json(&mut out, filter);
    }
    if !layer.filters.is_empty() {
        out.extend_from_slice(b"\n      ");
    }
    out.extend_from_slice(b"]\n    }");
    Ok(out)
}

/// `{"filter":n,"top":[...]}`, compact.
fn filter_json(out: &mut Vec<u8>, filter: &TopkFilter) {
    let mut ints = itoa::Buffer::new();
    out.extend_from_slice(b"{\"filter\":");
    out.extend_from_slice(ints.format(filter.filter).as_bytes());
    out.extend_from_slice(b",\"top\":[");
    for (i, entry) in filter.top.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        entry_json(out, entry, &mut ints);
    }
    out.extend_from_slice(b"]}");
}

/// `{"image":i,"value":v,"y":y,"x":x,"box":[x0,y0,x1,y1]}`, compact; a value that is not
/// finite and a missing box are `null`, as serde_json writes them.
fn entry_json(out: &mut Vec<u8>, entry: &TopkEntry, ints: &mut itoa::Buffer) {
    out.extend_from_slice(b"{\"image\":");
    out.extend_from_slice(ints.format(entry.image).as_bytes());
    out.extend_from_slice(b",\"value\":");
    if entry.value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(entry.value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"y\":");
    out.extend_from_slice(ints.format(entry.y).as_bytes());
    out.extend_from_slice(b",\"x\":");
    out.extend_from_slice(ints.format(entry.x).as_bytes());
    out.extend_from_slice(b",\"box\":");
    match entry.pixel_box {
        Some(corners) => {
            out.push(b'[');
            for (i, c) in corners.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(ints.format(*c).as_bytes());
            }
            out.push(b']');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    /// `value` as JSON, indented like `serde_json::to_vec_pretty` for the outer `levels` levels
    /// of nesting and compact inside them, with a final newline: the one-writer reference
    /// [`topk_json`] is tested against.
    fn to_json_lines<T: Serialize>(value: &T, levels: usize) -> serde_json::Result<Vec<u8>> {
        let mut out = shallow_pretty(value, 0, levels)?;
        out.push(b'\n');
        Ok(out)
    }

    /// `value` written with [`ShallowPretty`] from inside `level` open containers.
    fn shallow_pretty<T: Serialize + ?Sized>(
        value: &T,
        level: usize,
        levels: usize,
    ) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(1 << 16);
        let formatter = ShallowPretty {
            level,
            levels,
            has_value: false,
        };
        value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out, formatter,
        ))?;
        Ok(out)
    }

    /// serde_json formatting for [`topk_json`]: `PrettyFormatter`'s rules (two spaces per
    /// level) down to `levels`, none deeper.
    struct ShallowPretty {
        /// Containers open around the current position.
        level: usize,
        levels: usize,
        /// Whether the innermost open container has an element.
        has_value: bool,
    }

    impl ShallowPretty {
        fn begin<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            bracket: &[u8],
        ) -> std::io::Result<()> {
            self.level += 1;
            self.has_value = false;
            w.write_all(bracket)
        }

        fn end<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            bracket: &[u8],
        ) -> std::io::Result<()> {
            self.level -= 1;
            if self.has_value && self.level < self.levels {
                self.newline(w)?;
            }
            w.write_all(bracket)
        }

        fn element<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if !first {
                w.write_all(b",")?;
            }
            if self.level <= self.levels {
                self.newline(w)?;
            }
            Ok(())
        }

        fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
            w.write_all(b"\n")?;
            (0..self.level).try_for_each(|_| w.write_all(b"  "))
        }
    }

    impl serde_json::ser::Formatter for ShallowPretty {
        fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            self.begin(w, b"[")
        }

        fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            self.end(w, b"]")
        }

        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            self.element(w, first)
        }

        fn end_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            _: &mut W,
        ) -> std::io::Result<()> {
            self.has_value = true;
            Ok(())
        }

        fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            self.begin(w, b"{")
        }

        fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            self.end(w, b"}")
        }

        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            self.element(w, first)
        }

        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
        ) -> std::io::Result<()> {
            w.write_all(if self.level <= self.levels {
                b": "
            } else {
                b":"
            })
        }

        fn end_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            _: &mut W,
        ) -> std::io::Result<()> {
            self.has_value = true;
            Ok(())
        }
    }

    #[test]
    fn json_lines_indent_the_outer_levels_only() {
        let entry = TopkEntry {
            image: 0,
            value: 1.5,
            y: 2,
            x: 3,
            pixel_box: Some([1, 2, 5, 6]),
        };
        let value = TopkFile {
            layers: vec![
                TopkLayer {
                    name: "a".into(),
                    filters: vec![
                        TopkFilter {
                            filter: 1,
                            top: vec![entry],
                        },
                        TopkFilter {
                            filter: 2,
                            top: vec![],
                        },
                    ],
                },
                TopkLayer {
                    name: "b".into(),
                    filters: vec![],
                },
            ],
        };
        let text = String::from_utf8(to_json_lines(&value, TOPK_LINE_LEVELS).unwrap()).unwrap();
        let expected = r#"{
  "layers": [
    {
      "name": "a",
      "filters": [
        {"filter":1,"top":[{"image":0,"value":1.5,"y":2,"x":3,"box":[1,2,5,6]}]},
        {"filter":2,"top":[]}
      ]
    },
    {
      "name": "b",
      "filters": []
    }
  ]
}
"#;
        assert_eq!(text, expected);
        // Deep enough, it is serde_json's pretty printing.
        let pretty = serde_json::to_string_pretty(&value).unwrap() + "\n";
        assert_eq!(
            String::from_utf8(to_json_lines(&value, 99).unwrap()).unwrap(),
            pretty
        );
        let parsed: TopkFile = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, value);
        // Layer by layer in parallel: the same bytes, with and without layers.
        assert_eq!(topk_json(&value).unwrap(), text.as_bytes());
        let empty = TopkFile { layers: vec![] };
        assert_eq!(
            topk_json(&empty).unwrap(),
            to_json_lines(&empty, TOPK_LINE_LEVELS).unwrap()
        );
    }

    #[test]
    fn hand_written_bytes_equal_serde_json_s() {
        let entry = |image, value, pixel_box| TopkEntry {
            image,
            value,
            y: 7,
            x: 65_535,
            pixel_box,
        };
        let value = TopkFile {
            layers: vec![
                TopkLayer {
                    name: "conv \"1\"\\\n\u{1}é".into(),
                    filters: vec![
                        TopkFilter {
                            filter: 1,
                            top: vec![
                                entry(u64::MAX, -0.0, Some([-3, 0, 224, i64::MIN])),
                                entry(0, 1e-7, None),
                                entry(3, f32::NAN, Some([1, 2, 3, 4])),
                                entry(4, f32::NEG_INFINITY, None),
                                entry(5, f32::MAX, Some([0, 0, 1, 1])),
                                entry(6, 123_456.79, Some([0, 0, 1, 1])),
                            ],
                        },
                        TopkFilter {
                            filter: 1 << 20,
                            top: vec![],
                        },
                    ],
                },
                TopkLayer {
                    name: String::new(),
                    filters: vec![],
                },
            ],
        };
        let reference = to_json_lines(&value, TOPK_LINE_LEVELS).unwrap();
        let written = topk_json(&value).unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            String::from_utf8(reference).unwrap()
        );
    }
}
