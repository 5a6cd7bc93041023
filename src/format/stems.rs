//! File-safe, unique stems for layer names. A stem is built only from `[A-Za-z0-9._-]`,
//! never starts with a dot, is at most [`MAX_STEM_LEN`] bytes and is unique ignoring case,
//! so `../`, `/`, `\`, `:`, NUL or very long names can never leave the export directory or
//! collide on a case-insensitive file system.

use std::collections::HashSet;

pub const MAX_STEM_LEN: usize = 96;

/// Maps layer names to stems, in order, each unique.
pub fn unique_stems<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::new();
    names
        .into_iter()
        .map(|name| {
            let base = safe_stem(name);
            let mut stem = base.clone();
            let mut k = 2;
            while !taken.insert(stem.to_ascii_lowercase()) {
                let suffix = format!("_{k}");
                let keep = base.len().min(MAX_STEM_LEN - suffix.len());
                stem = format!("{}{suffix}", &base[..keep]);
                k += 1;
            }
            stem
        })
        .collect()
}

/// The file-safe form of one name (not yet unique).
pub fn safe_stem(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Collapse runs of '_' and drop leading/trailing separators and dots.
    let mut out = String::with_capacity(mapped.len());
    for c in mapped.chars() {
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_matches(|c| c == '_' || c == '.' || c == '-');
    let mut stem: String = trimmed.chars().take(MAX_STEM_LEN).collect();
    while stem.ends_with('.') {
        stem.pop();
    }
    if stem.is_empty() {
        "layer".to_string()
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_inside_and_unique() {
        let long = "x".repeat(300);
        let names = [
            "../../etc/passwd",
            "a/b",
            "a\\b",
            "c:d",
            "nul\0byte",
            long.as_str(),
            "",
            "..",
            "A/B",
        ];
        let stems = unique_stems(names.iter().copied());
        for s in &stems {
            assert!(!s.is_empty() && s.len() <= MAX_STEM_LEN, "{s}");
            assert!(!s.starts_with('.'), "{s}");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "{s}"
            );
        }
        assert_eq!(stems[0], "etc_passwd");
        assert_eq!(stems[1], "a_b");
        assert_eq!(stems[2], "a_b_2");
        let lower: HashSet<String> = stems.iter().map(|s| s.to_lowercase()).collect();
        assert_eq!(lower.len(), stems.len(), "unique ignoring case: {stems:?}");
    }

    #[test]
    fn onnx_style_names_read_well() {
        assert_eq!(
            safe_stem("/_blocks.0/_depthwise_conv/Conv"),
            "blocks.0_depthwise_conv_Conv"
        );
        assert_eq!(safe_stem("conv1"), "conv1");
    }
}
