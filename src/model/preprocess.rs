//! The input pipeline: an image file (PNG, JPEG, WebP, BMP, TIFF, GIF; grey, alpha and
//! 16-bit included) → RGB → fit to the model's size (`crop`, `stretch` or `pad`) →
//! `(pixel/255 - mean) / std` in `[1, 3, H, W]`; or a `.npy` tensor used as it is.

use std::path::Path;

use image::RgbImage;

use super::resize::{resize_bilinear, resize_region_bilinear};

use super::{ModelError, Result};

/// How an image of another aspect ratio is brought to the model's size (`--fit`, parsed by
/// the CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Centre-crop to the model's aspect ratio, then resize (the default).
    #[default]
    Crop,
    /// Resize, ignoring the aspect ratio.
    Stretch,
    /// Resize to fit inside, then pad with the mean colour (normalised value 0).
    Pad,
}

/// Size and normalisation of the model input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// `[H, W]` in pixels.
    pub size_hw: [usize; 2],
    /// Per-channel mean, in 0..1 pixel units.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in 0..1 pixel units.
    pub std: [f32; 3],
    pub fit: Fit,
}

impl InputSpec {
    /// ImageNet statistics, the usual default for ONNX classifiers.
    pub fn imagenet(size_hw: [usize; 2]) -> Self {
        Self {
            size_hw,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            fit: Fit::Crop,
        }
    }
}

/// A ready model input: `[1, 3, H, W]` values plus the RGB picture the model sees.
#[derive(Debug, Clone)]
pub struct InputTensor {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
    /// The fitted image at model resolution (for display); `None` for `.npy` inputs.
    pub picture: Option<RgbImage>,
}

/// [`load_input`] for every path, decoded in parallel (decoding and resizing run on one
/// core per file), results in the order of `paths`: a batch's files for the dataset scan and
/// `stats`, which load while no pass runs.
pub fn load_inputs<P: AsRef<Path> + Sync>(
    paths: &[P],
    spec: &InputSpec,
) -> Vec<Result<InputTensor>> {
    use rayon::prelude::*;
    paths
        .par_iter()
        .map(|p| load_input(p.as_ref(), spec))
        .collect()
}

/// Loads an image or `.npy` file as the model input.
pub fn load_input(path: &Path, spec: &InputSpec) -> Result<InputTensor> {
    let is_npy = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        return load_npy_input(path, spec);
    }
    Ok(image_to_input(&load_rgb(path)?, spec))
}

/// Decodes an image file to 8-bit RGB, refusing more than [`MAX_INPUT_PIXELS`] from its
/// header before decoding.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let reader = image::ImageReader::open(path)
        .map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            error: source,
        })?
        .with_guessed_format()
        .map_err(|e| ModelError::input(path.display(), e.to_string()))?;
    if reader.format().is_none() {
        return Err(ModelError::input(
            path.display(),
            "not a recognised image format (PNG, JPEG, WebP, BMP, TIFF, GIF) nor .npy",
        ));
    }
    // Check the size the header claims before decoding anything (cheap: header only).
    let (w, h) = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            error: source,
        })?
        .into_dimensions()
        .map_err(|e| ModelError::input(path.display(), format!("cannot decode image: {e}")))?;
    check_pixel_budget(path.display(), w, h)?;
    let mut reader = reader;
    reader.limits(decode_limits());
    let img = crate::decode_guard::decode(reader)
        .map_err(|e| ModelError::input(path.display(), format!("cannot decode image: {e}")))?;
    Ok(img.into_rgb8())
}

/// Largest image decoded, in pixels (8000×8000). Decoding keeps the whole image in memory
/// (plus an RGB copy), so larger files are refused with a message instead of taking
/// gigabytes; the model sees a few hundred pixels per side anyway.
pub const MAX_INPUT_PIXELS: u64 = 64_000_000;

fn check_pixel_budget(what: impl std::fmt::Display, w: u32, h: u32) -> Result<()> {
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_INPUT_PIXELS {
        return Err(ModelError::input(
            what,
            format!(
                "the image is {w}×{h} ({:.0} megapixels); ConvLens decodes at most {} megapixels — downscale it first",
                pixels as f64 / 1e6,
                MAX_INPUT_PIXELS / 1_000_000
            ),
        ));
    }
    Ok(())
}

/// Decoder limits matching [`MAX_INPUT_PIXELS`] (a lying header cannot make a decoder
/// allocate more than 1 GiB).
fn decode_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(1 << 30);
    limits
}

/// Decodes image bytes held in memory (the embedded sample photos).
pub fn load_input_bytes(bytes: &[u8], name: &str, spec: &InputSpec) -> Result<InputTensor> {
    let decode_err =
        |e: image::ImageError| ModelError::input(name, format!("cannot decode image: {e}"));
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ModelError::input(name, e.to_string()))?;
    reader.limits(decode_limits());
    let (w, h) = reader.into_dimensions().map_err(decode_err)?;
    check_pixel_budget(name, w, h)?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ModelError::input(name, e.to_string()))?;
    reader.limits(decode_limits());
    let img = crate::decode_guard::decode(reader)
        .map_err(|e| ModelError::input(name, format!("cannot decode image: {e}")))?;
    Ok(image_to_input(&img.into_rgb8(), spec))
}

/// The input files a path names: the file itself, or a folder's images and `.npy` files
/// sorted by name (not recursive).
pub fn list_inputs(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(ModelError::input(path.display(), "no such file or folder"));
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        error: source,
    })?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_input_file(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::input(
            path.display(),
            "the folder holds no images (png, jpg, webp, bmp, tif, gif) or .npy files",
        ));
    }
    Ok(files)
}

pub fn is_input_file(p: &Path) -> bool {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    matches!(
        ext.as_str(),
        "png" | "jpg" | "jpeg" | "webp" | "bmp" | "tif" | "tiff" | "gif" | "npy"
    )
}

fn load_npy_input(path: &Path, spec: &InputSpec) -> Result<InputTensor> {
    let arr =
        crate::npy::read(path).map_err(|e| ModelError::input(path.display(), e.to_string()))?;
    let [h, w] = spec.size_hw;
    let ok = matches!(arr.shape.as_slice(), [1, 3, a, b] | [3, a, b] if *a == h && *b == w);
    if !ok {
        return Err(ModelError::input(
            path.display(),
            format!(
                "tensor shape {:?} does not match the model input [1, 3, {h}, {w}] (or [3, {h}, {w}])",
                arr.shape
            ),
        ));
    }
    Ok(InputTensor {
        shape: [1, 3, h, w],
        data: arr.data,
        picture: None,
    })
}

/// Fits an RGB image to the spec and normalises it.
pub fn image_to_input(img: &RgbImage, spec: &InputSpec) -> InputTensor {
    let [h, w] = spec.size_hw;
    let fitted = fit_image(img, [h as u32, w as u32], spec);
    // Per channel, every byte's normalised value (the same expression, looked up).
    let lut: [[f32; 256]; 3] = std::array::from_fn(|c| {
        std::array::from_fn(|v| (v as f32 / 255.0 - spec.mean[c]) / spec.std[c])
    });
    let mut data = vec![0f32; 3 * h * w];
    let (r, gb) = data.split_at_mut(h * w);
    let (g, b) = gb.split_at_mut(h * w);
    let planes = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
    for (p, ((r, g), b)) in fitted.as_raw().chunks_exact(3).zip(planes) {
        (*r, *g, *b) = (
            lut[0][usize::from(p[0])],
            lut[1][usize::from(p[1])],
            lut[2][usize::from(p[2])],
        );
    }
    InputTensor {
        shape: [1, 3, h, w],
        data,
        picture: Some(fitted),
    }
}

/// Brings an image to `[h, w]` according to `spec.fit`; an image already at that size is
/// returned unchanged (no resampling).
pub fn fit_image(img: &RgbImage, [h, w]: [u32; 2], spec: &InputSpec) -> RgbImage {
    let (iw, ih) = img.dimensions();
    if (iw, ih) == (w, h) {
        return img.clone();
    }
    match spec.fit {
        Fit::Stretch => resize_bilinear(img, w, h),
        Fit::Crop => {
            let (cw, ch) = crop_size(iw, ih, w, h);
            let (x0, y0) = ((iw - cw) / 2, (ih - ch) / 2);
            if (cw, ch) == (w, h) {
                image::imageops::crop_imm(img, x0, y0, cw, ch).to_image()
            } else {
                resize_region_bilinear(img, [x0, y0, cw, ch], w, h)
            }
        }
        Fit::Pad => {
            let scale = (w as f64 / iw as f64).min(h as f64 / ih as f64);
            let (sw, sh) = (
                ((iw as f64 * scale).round() as u32).clamp(1, w),
                ((ih as f64 * scale).round() as u32).clamp(1, h),
            );
            let scaled = resize_bilinear(img, sw, sh);
            let mean = spec
                .mean
                .map(|m| (m * 255.0).round().clamp(0.0, 255.0) as u8);
            let mut canvas = RgbImage::from_pixel(w, h, image::Rgb(mean));
            image::imageops::replace(
                &mut canvas,
                &scaled,
                i64::from((w - sw) / 2),
                i64::from((h - sh) / 2),
            );
            canvas
        }
    }
}

/// Largest centred crop of `iw × ih` with the aspect ratio of `w × h`.
fn crop_size(iw: u32, ih: u32, w: u32, h: u32) -> (u32, u32) {
    // Compare iw/ih with w/h in integers.
    if u64::from(iw) * u64::from(h) > u64::from(ih) * u64::from(w) {
        (
            ((u64::from(ih) * u64::from(w)) / u64::from(h)).max(1) as u32,
            ih,
        )
    } else {
        (
            iw,
            ((u64::from(iw) * u64::from(h)) / u64::from(w)).max(1) as u32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_is_centred_and_keeps_aspect() {
        assert_eq!(crop_size(600, 400, 224, 224), (400, 400));
        assert_eq!(crop_size(300, 451, 224, 224), (300, 300));
        assert_eq!(crop_size(1, 1, 224, 224), (1, 1));
    }

    #[test]
    fn normalisation_matches_formula_and_layout() {
        let mut img = RgbImage::new(2, 2);
        img.put_pixel(1, 0, image::Rgb([255, 0, 51]));
        let spec = InputSpec {
            size_hw: [2, 2],
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.25, 0.5],
            fit: Fit::Crop,
        };
        let t = image_to_input(&img, &spec);
        // channel-major: R plane then G then B; pixel (x=1, y=0) is flat index 1.
        assert_eq!(t.data[1], 1.0);
        assert_eq!(t.data[4 + 1], -2.0);
        assert!((t.data[8 + 1] - (0.2 - 0.5) / 0.5).abs() < 1e-6);
        assert_eq!(t.data[0], -1.0);
    }

    #[test]
    fn pad_uses_mean_colour() {
        let img = RgbImage::from_pixel(4, 2, image::Rgb([255, 255, 255]));
        let spec = InputSpec {
            size_hw: [4, 4],
            mean: [0.5, 0.5, 0.5],
            std: [1.0, 1.0, 1.0],
            fit: Fit::Pad,
        };
        let t = image_to_input(&img, &spec);
        // Top row is padding: (128/255 - 0.5) ≈ 0.
        assert!(t.data[0].abs() < 0.01);
        // Middle rows are the white image.
        assert!((t.data[4 + 1] - 0.5).abs() < 1e-6);
    }
}
