//! Resampling an RGB picture to the model's input size, exactly as Pillow's
//! `Image.resize(size, Image.BILINEAR)` does it (torchvision's default on PIL images): an
//! antialiased triangle filter whose support widens with the scale factor, weights in
//! 22-bit fixed point, a horizontal pass over the rows the vertical pass reads, rounded to
//! 8 bits, then the vertical pass. Part of preprocessing ([`super::preprocess::fit_image`]);
//! the `image` crate's `Triangle` filter took 2.65 ms for EfficientNet-Lite0's 400×400 →
//! 224×224 and did not match Pillow's pixels.

use image::RgbImage;
use rayon::prelude::*;

/// Fixed-point bits of a weight (Pillow's `PRECISION_BITS`: `32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// One output position's taps: the first input index and one weight per input index.
struct Taps {
    /// Per output position: first input index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `out_len × max_taps` fixed-point weights (rows padded with zeros).
    weights: Vec<i32>,
    max_taps: usize,
}

/// Pillow's `precompute_coeffs` (bilinear filter, support 1) for `in_len → out_len`, then
/// `normalize_coeffs_8bpc`.
fn taps(in_len: usize, out_len: usize) -> Taps {
    let scale = in_len as f64 / out_len as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the bilinear filter's support is 1
    let max_taps = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_len);
    let mut weights = vec![0i32; out_len * max_taps];
    let mut row = vec![0f64; max_taps];
    for (out, w_row) in weights.chunks_exact_mut(max_taps).enumerate() {
        let center = (out as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero; the clamps make that a floor here.
        let first = ((center - support + 0.5) as i64).max(0) as usize;
        let end = ((center + support + 0.5) as i64)
            .min(in_len as i64)
            .max(first as i64) as usize;
        let count = (end - first).min(max_taps);
        let mut total = 0.0;
        for (x, w) in row.iter_mut().enumerate().take(count) {
            let t = ((x + first) as f64 - center + 0.5) / filter_scale;
            *w = (1.0 - t.abs()).max(0.0);
            total += *w;
        }
        for (dst, &w) in w_row.iter_mut().zip(&row[..count]) {
            let w = if total != 0.0 { w / total } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            *dst = if w < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        bounds.push((first, count));
    }
    Taps {
        bounds,
        weights,
        max_taps,
    }
}

/// Pillow's `clip8`: a fixed-point sum (with its rounding half already added) to 8 bits.
#[inline]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The weighted sum of consecutive RGB pixels `pixels` (`[taps, 3]`) with `weights`.
#[inline]
fn weighted(pixels: &[u8], weights: &[i32]) -> [u8; 3] {
    let mut sums = [1i32 << (PRECISION_BITS - 1); 3];
    for (px, &w) in pixels.chunks_exact(3).zip(weights) {
        for (sum, &v) in sums.iter_mut().zip(px) {
            *sum += i32::from(v) * w;
        }
    }
    sums.map(clip8)
}

/// `img` resampled to `w × h` as Pillow's `Image.BILINEAR` resize (see the module docs);
/// rows in parallel. A side that keeps its size is not resampled.
pub fn resize_bilinear(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    resize_region_bilinear(img, [0, 0, img.width(), img.height()], w, h)
}

/// [`resize_bilinear`] of the region `[x0, y0, width, height]` of `img` (clamped to the
/// image), read in place: a centre crop resized without copying the crop first.
pub fn resize_region_bilinear(img: &RgbImage, region: [u32; 4], w: u32, h: u32) -> RgbImage {
    let [x0, y0] = [region[0].min(img.width()), region[1].min(img.height())];
    let in_w = region[2].min(img.width() - x0) as usize;
    let in_h = region[3].min(img.height() - y0) as usize;
    let (out_w, out_h) = (w as usize, h as usize);
    if out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return RgbImage::new(w, h);
    }
    let stride = img.width() as usize * 3;
    // Row `r` of the region: `in_w` RGB pixels.
    let src_row =
        |r: usize| &img.as_raw()[(y0 as usize + r) * stride + x0 as usize * 3..][..in_w * 3];
    let vertical = taps(in_h, out_h);
    // The horizontal pass covers only the rows the vertical pass reads.
    let rows_first = vertical.bounds[0].0;
    let rows_end = vertical.bounds.last().map_or(in_h, |&(f, n)| f + n);
    let across: Vec<u8> = if out_w == in_w {
        (rows_first..rows_end).flat_map(src_row).copied().collect()
    } else {
        let horizontal = taps(in_w, out_w);
        let mut across = vec![0u8; (rows_end - rows_first) * out_w * 3]; // [rows, out_w, 3]
        across
            .par_chunks_exact_mut(out_w * 3)
            .enumerate()
            .for_each(|(r, dst)| {
                let row = src_row(rows_first + r);
                let weights = horizontal.weights.chunks_exact(horizontal.max_taps);
                for ((px, &(first, count)), k) in
                    dst.chunks_exact_mut(3).zip(&horizontal.bounds).zip(weights)
                {
                    px.copy_from_slice(&weighted(&row[first * 3..(first + count) * 3], k));
                }
            });
        across
    };
    if out_h == in_h {
        return RgbImage::from_raw(w, h, across).unwrap_or_else(|| RgbImage::new(w, h));
    }
    // Vertical: each output row is a weighted sum of whole rows of `across`, one
    // vectorisable multiply-add per tap.
    let row_len = out_w * 3;
    let mut out = vec![0u8; out_h * row_len];
    out.par_chunks_exact_mut(row_len)
        .zip(vertical.bounds.par_iter())
        .zip(vertical.weights.par_chunks_exact(vertical.max_taps))
        .for_each_init(
            || vec![0i32; row_len],
            |sums, ((dst, &(first, count)), k)| {
                sums.fill(1 << (PRECISION_BITS - 1));
                let rows = across[(first - rows_first) * row_len..].chunks_exact(row_len);
                for (row, &w) in rows.zip(&k[..count]) {
                    for (sum, &v) in sums.iter_mut().zip(row) {
                        *sum += i32::from(v) * w;
                    }
                }
                for (d, &sum) in dst.iter_mut().zip(sums.iter()) {
                    *d = clip8(sum);
                }
            },
        );
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A region read in place resizes exactly as the same region cropped first (odd offsets,
    /// a region running past the image edge is clamped to it).
    #[test]
    fn a_region_resizes_as_its_crop() {
        let img = RgbImage::from_fn(37, 23, |x, y| {
            image::Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, (255 - x - y) as u8])
        });
        for (region, out) in [
            ([3, 5, 20, 11], [9, 4]),
            ([0, 0, 37, 23], [37, 5]),
            ([11, 2, 40, 40], [13, 21]),
        ] {
            let [x0, y0, w, h] = region;
            let (cw, ch) = (w.min(37 - x0), h.min(23 - y0));
            let cropped = image::imageops::crop_imm(&img, x0, y0, cw, ch).to_image();
            assert_eq!(
                resize_region_bilinear(&img, region, out[0], out[1]),
                resize_bilinear(&cropped, out[0], out[1]),
                "region {region:?} to {out:?}"
            );
        }
    }

    /// Hand-computed: halving a 4-pixel row (scale 2, support 2) gives output 0 taps at
    /// input 0..=2 (centre 1, weights ¾, ¾, ¼ of 1.75 → 3/7, 3/7, 1/7) and output 1 taps at
    /// 1..=3 (centre 3: ¼, ¾, ¾ → 1/7, 3/7, 3/7).
    #[test]
    fn halving_a_row_by_hand() {
        let img = RgbImage::from_fn(4, 1, |x, _| {
            image::Rgb([[0, 70, 140, 210][x as usize], 0, 7])
        });
        let out = resize_bilinear(&img, 2, 1);
        // (0·3 + 70·3 + 140·1) / 7 = 50; (70·1 + 140·3 + 210·3) / 7 = 160.
        assert_eq!(out.get_pixel(0, 0).0, [50, 0, 7]);
        assert_eq!(out.get_pixel(1, 0).0, [160, 0, 7]);
    }

    /// A constant picture stays constant at any scale, both ways; same size is a copy.
    #[test]
    fn constants_stay_and_same_size_is_identity() {
        let flat = RgbImage::from_pixel(37, 23, image::Rgb([200, 3, 128]));
        for (w, h) in [(224, 224), (5, 9), (37, 11), (80, 23)] {
            let out = resize_bilinear(&flat, w, h);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [200, 3, 128]), "{w}×{h}");
        }
        let img = RgbImage::from_fn(9, 7, |x, y| image::Rgb([(x * 20) as u8, (y * 30) as u8, 1]));
        assert_eq!(resize_bilinear(&img, 9, 7), img);
        assert_eq!(resize_bilinear(&img, 0, 7).dimensions(), (0, 7));
    }
}
