//! The one golden-image comparison every snapshot test goes through: a PNG under
//! `tests/golden/`, a tolerance, `CONVLENS_UPDATE_GOLDEN=1` to regenerate, and `-actual` /
//! `-diff` images written on failure.
#![allow(dead_code)]

use std::path::PathBuf;

use image::RgbaImage;

/// How close a rendering must be to its golden.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Largest allowed difference of one channel of one pixel.
    pub per_channel: u8,
    /// Fraction of pixels allowed to exceed `per_channel` (antialiased glyph edges differ
    /// slightly between rasterisers).
    pub outlier_fraction: f64,
}

/// Geometry and colour maps: deterministic up to rounding.
pub const EXACT: Tolerance = Tolerance {
    per_channel: 2,
    outlier_fraction: 0.0,
};
/// Text: glyph rasterisation and blending may differ a little between drivers.
pub const TEXT: Tolerance = Tolerance {
    per_channel: 24,
    outlier_fraction: 0.02,
};

pub fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.png"))
}

/// THE comparison helper: checks `actual` against `tests/golden/<name>.png` within `tol`;
/// with `CONVLENS_UPDATE_GOLDEN=1` (re)writes the golden instead. On mismatch writes
/// `<name>-actual.png` and `<name>-diff.png` (differences ×8, alpha opaque) under the cargo
/// target tmp dir and panics naming them.
pub fn assert_golden(name: &str, actual: &RgbaImage, tol: Tolerance) {
    let path = golden_path(name);
    if std::env::var("CONVLENS_UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        actual
            .save(&path)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("updated golden {}", path.display());
        return;
    }
    let golden = image::open(&path)
        .unwrap_or_else(|e| {
            panic!(
                "golden {} unreadable ({e}); create it with CONVLENS_UPDATE_GOLDEN=1",
                path.display()
            )
        })
        .to_rgba8();
    let mut bad = 0usize;
    let mut worst = 0u8;
    let mut diff = RgbaImage::new(actual.width(), actual.height());
    let same_size = golden.dimensions() == actual.dimensions();
    if same_size {
        for ((a, g), d) in actual.pixels().zip(golden.pixels()).zip(diff.pixels_mut()) {
            let delta: [u8; 4] = std::array::from_fn(|c| a.0[c].abs_diff(g.0[c]));
            let m = delta.iter().copied().max().unwrap_or(0);
            worst = worst.max(m);
            if m > tol.per_channel {
                bad += 1;
            }
            *d = image::Rgba([
                delta[0].saturating_mul(8),
                delta[1].saturating_mul(8),
                delta[2].saturating_mul(8),
                255,
            ]);
        }
    }
    let allowed = (tol.outlier_fraction * f64::from(actual.width() * actual.height())) as usize;
    if same_size && bad <= allowed {
        return;
    }
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("golden");
    std::fs::create_dir_all(&out_dir).unwrap_or_else(|e| panic!("{}: {e}", out_dir.display()));
    let actual_path = out_dir.join(format!("{name}-actual.png"));
    let diff_path = out_dir.join(format!("{name}-diff.png"));
    let _ = actual.save(&actual_path);
    let _ = diff.save(&diff_path);
    panic!(
        "{name}: {bad} pixel(s) differ by more than {} (allowed {allowed}, worst {worst}); \
         golden {}x{}, actual {}x{}; wrote {} and {}",
        tol.per_channel,
        golden.width(),
        golden.height(),
        actual.width(),
        actual.height(),
        actual_path.display(),
        diff_path.display()
    );
}
