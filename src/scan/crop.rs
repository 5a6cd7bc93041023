//! Receptive-field crops: the pixels a top unit reads, cut from the picture the model saw
//! and scaled to a fixed square. Each output pixel is the mean of the source pixels under
//! it (a summed-area table per picture makes that O(1), so thousands of crops of an image
//! cost little more than writing them); parts of the field outside the picture are grey.
//! `write_crops` writes a scan's `examples/` folder: one PNG per top entry (an image's entries
//! with the same field share one file, hard-linked where the file system allows).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use super::format::{self, Manifest};
use super::receptive::{Clip, PixelBox, ReceptiveFields};
use super::{Result, ScanError, io_err};
use crate::model::preprocess::{InputSpec, InputTensor, load_input};

/// The grey that fills a field's part outside the picture.
const OUTSIDE: u64 = 128;

/// The RGB picture the model saw: the fitted image, or a `.npy` input un-normalised.
pub fn model_picture(input: &InputTensor, spec: &InputSpec) -> RgbImage {
    if let Some(p) = &input.picture {
        return p.clone();
    }
    let [_, _, h, w] = input.shape;
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb(std::array::from_fn(|c| {
            let v = input.data[(c * h + y as usize) * w + x as usize];
            ((v * spec.std[c] + spec.mean[c]) * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    })
}

/// Sums of a picture's pixels over any rectangle.
pub struct CropSampler {
    w: usize,
    h: usize,
    /// `(w + 1) × (h + 1)` prefix sums per channel: `sat[y][x]` = sum over `[0, x) × [0, y)`.
    sat: Vec<[u64; 3]>,
}

impl CropSampler {
    pub fn new(picture: &RgbImage) -> Self {
        let (w, h) = (picture.width() as usize, picture.height() as usize);
        let mut sat = vec![[0u64; 3]; (w + 1) * (h + 1)];
        for y in 0..h {
            let mut row = [0u64; 3];
            for x in 0..w {
                let p = picture.get_pixel(x as u32, y as u32).0;
                for c in 0..3 {
                    row[c] += u64::from(p[c]);
                    sat[(y + 1) * (w + 1) + x + 1][c] = sat[y * (w + 1) + x + 1][c] + row[c];
                }
            }
        }
        Self { w, h, sat }
    }

    /// Channel sums over `[x0, x1) × [y0, y1)` clipped to the picture, and the pixel count
    /// inside it.
    fn sum(&self, x0: i64, y0: i64, x1: i64, y1: i64) -> ([u64; 3], u64) {
        let cx = |x: i64| x.clamp(0, self.w as i64) as usize;
        let cy = |y: i64| y.clamp(0, self.h as i64) as usize;
        let (x0, x1, y0, y1) = (cx(x0), cx(x1), cy(y0), cy(y1));
        if x0 >= x1 || y0 >= y1 {
            return ([0; 3], 0);
        }
        let at = |x: usize, y: usize| self.sat[y * (self.w + 1) + x];
        let (a, b, c, d) = (at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1));
        let sums = std::array::from_fn(|k| d[k] + a[k] - b[k] - c[k]);
        (sums, ((x1 - x0) * (y1 - y0)) as u64)
    }

    /// `field` scaled to `size` square: each output pixel the mean of the source pixels it
    /// covers (at least one: enlarging repeats pixels, so small fields stay crisp).
    pub fn crop(&self, field: PixelBox, size: u32) -> RgbImage {
        let (fw, fh) = (field.width().max(1), field.height().max(1));
        let n = i64::from(size);
        let edges = |origin: i64, extent: i64, k: i64| -> (i64, i64) {
            let lo = origin + (k * extent).div_euclid(n);
            let hi = (origin + ((k + 1) * extent + n - 1).div_euclid(n)).max(lo + 1);
            (lo, hi)
        };
        // Each output column's and row's source span, once per crop rather than per pixel.
        let columns: Vec<(i64, i64)> = (0..n).map(|u| edges(field.x0, fw, u)).collect();
        let rows: Vec<(i64, i64)> = (0..n).map(|v| edges(field.y0, fh, v)).collect();
        RgbImage::from_fn(size, size, |u, v| {
            let (x0, x1) = columns[u as usize];
            let (y0, y1) = rows[v as usize];
            let (sums, inside) = self.sum(x0, y0, x1, y1);
            let area = ((x1 - x0) * (y1 - y0)) as u64;
            let outside = area - inside;
            image::Rgb(std::array::from_fn(|c| {
                ((sums[c] + OUTSIDE * outside + area / 2) / area) as u8
            }))
        })
    }
}

/// `crop` as PNG bytes (the `image` crate's default, fast compression).
pub fn encode_png(crop: &RgbImage) -> image::ImageResult<Vec<u8>> {
    let mut bytes = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut bytes),
        crop.as_raw(),
        crop.width(),
        crop.height(),
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(bytes)
}

/// One crop to write: a top entry of a layer (index into the scan's layers), the unit's
/// position, and where the PNG goes (filter and rank from 1).
struct CropJob {
    layer: usize,
    filter: usize,
    rank: usize,
    y: u32,
    x: u32,
}

/// One crop PNG per top entry: the unit's whole (unclipped) receptive field, the parts
/// outside the image grey, resized to `crop_size` square. Images are loaded once each
/// (with `input_spec`, as the scan loaded them); `progress(done, total)` counts images.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_crops(
    (input_spec, crop_size): (&InputSpec, u32),
    rf: &ReceptiveFields,
    layers: &[(usize, [usize; 3])],
    manifest: &Manifest,
    topk: &format::TopkFile,
    scanned: &[&PathBuf],
    work: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let mut wanted: BTreeMap<u64, Vec<CropJob>> = BTreeMap::new();
    for (li, layer) in topk.layers.iter().enumerate() {
        for f in &layer.filters {
            for (r, e) in f.top.iter().enumerate() {
                wanted.entry(e.image).or_default().push(CropJob {
                    layer: li,
                    filter: f.filter,
                    rank: r + 1,
                    y: e.y,
                    x: e.x,
                });
            }
        }
    }
    // A crop phase cut off before (a kill, then `--resume`) left files here, some of them
    // hard links of others: start from an empty folder so no link is written through.
    let examples = work.join(format::EXAMPLES_DIR);
    if examples.exists() {
        std::fs::remove_dir_all(&examples).map_err(io_err(&examples))?;
    }
    for l in &manifest.layers {
        let dir = examples.join(&l.stem);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    }
    // Each layer's distinct units, their fields worked out layer by layer side by side.
    let mut units: Vec<HashSet<(u32, u32)>> = vec![HashSet::new(); layers.len()];
    for j in wanted.values().flatten() {
        units[j.layer].insert((j.y, j.x));
    }
    let fields: HashMap<(usize, u32, u32), Option<PixelBox>> = (units.par_iter().enumerate())
        .flat_map_iter(|(li, units)| {
            let mut layer_fields = rf.layer(layers[li].0, Clip::None);
            (units.iter())
                .map(|&(y, x)| ((li, y, x), layer_fields.field(y as usize, x as usize)))
                .collect::<Vec<_>>()
        })
        .collect();
    let jobs: Vec<(&u64, &Vec<CropJob>)> = wanted.iter().collect();
    let total = jobs.len();
    let mut done = 0;
    progress(done, total);
    for group in jobs.chunks(64) {
        group
            .par_iter()
            .map(|&(&image, entries)| {
                let path = scanned.get(image as usize).ok_or_else(|| {
                    ScanError::Layers(format!(
                        "top-k names image {image}, past the {} scanned",
                        scanned.len()
                    ))
                })?;
                let input = load_input(path, input_spec).map_err(|e| {
                    ScanError::Layers(format!("reloading {} for crops: {e}", path.display()))
                })?;
                let sampler = CropSampler::new(&model_picture(&input, input_spec));
                // Filters that peak at the same field of an image share its crop: each
                // distinct field is cut, encoded and written once (EfficientNet-Lite0 over 48
                // photos: 189,072 crops, 29,414 distinct fields), and its other files are hard
                // links of the first where the file system has them.
                let mut written: HashMap<PixelBox, (Vec<u8>, PathBuf)> = HashMap::new();
                for job in entries {
                    let Some(Some(b)) = fields.get(&(job.layer, job.y, job.x)) else {
                        continue;
                    };
                    let stem = &manifest.layers[job.layer].stem;
                    let dest = format::example_path(work, stem, job.filter, job.rank);
                    match written.entry(*b) {
                        Entry::Occupied(e) => {
                            let (png, first) = e.get();
                            if std::fs::hard_link(first, &dest).is_err() {
                                std::fs::write(&dest, png).map_err(io_err(&dest))?;
                            }
                        }
                        Entry::Vacant(e) => {
                            let png =
                                encode_png(&sampler.crop(*b, crop_size)).map_err(|error| {
                                    ScanError::Png {
                                        path: dest.clone(),
                                        error,
                                    }
                                })?;
                            std::fs::write(&dest, &png).map_err(io_err(&dest))?;
                            e.insert((png, dest));
                        }
                    }
                }
                Ok(())
            })
            .collect::<Result<()>>()?;
        done += group.len();
        progress(done, total);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_average_the_covered_pixels_by_hand() {
        // 4×2 picture, red channel 0, 10, …, 70 row-major.
        let picture = RgbImage::from_fn(4, 2, |x, y| image::Rgb([(10 * (y * 4 + x)) as u8, 0, 0]));
        let s = CropSampler::new(&picture);
        let whole = PixelBox {
            x0: 0,
            y0: 0,
            x1: 4,
            y1: 2,
        };
        // One output pixel: the mean of all eight, 35.
        let c = s.crop(whole, 1);
        assert_eq!(c.get_pixel(0, 0).0[0], 35);
        let c = s.crop(
            PixelBox {
                x0: 0,
                y0: 0,
                x1: 2,
                y1: 2,
            },
            2,
        );
        assert_eq!(
            [
                c.get_pixel(0, 0).0[0],
                c.get_pixel(1, 0).0[0],
                c.get_pixel(0, 1).0[0]
            ],
            [0, 10, 40]
        );
        // Half outside: (0 + 40 + 2 × 128) / 4 = 74.
        let c = s.crop(
            PixelBox {
                x0: -1,
                y0: 0,
                x1: 1,
                y1: 2,
            },
            1,
        );
        assert_eq!(c.get_pixel(0, 0).0, [74, 64, 64]);
        // Enlarging repeats pixels.
        let c = s.crop(
            PixelBox {
                x0: 3,
                y0: 1,
                x1: 4,
                y1: 2,
            },
            3,
        );
        assert!(c.pixels().all(|p| p.0 == [70, 0, 0]));
    }

    /// Every output pixel the rounded mean of its span's pixels, summed one by one (grey
    /// outside), on fields partly or wholly outside the picture, smaller and larger than
    /// the crop, against an irregular picture.
    #[test]
    fn crops_equal_the_mean_of_each_span() {
        let (w, h) = (37u32, 23u32);
        let picture = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 + y * 13) as u8,
                (x * y) as u8,
                (255 - x - 3 * y) as u8,
            ])
        });
        let sampler = CropSampler::new(&picture);
        let fields = [
            (0, 0, 37, 23),
            (-5, -9, 11, 4),
            (30, 20, 90, 61),
            (-50, -50, -10, -20),
            (3, 4, 4, 5),
            (-1, 2, 36, 22),
        ];
        for (x0, y0, x1, y1) in fields {
            let field = PixelBox { x0, y0, x1, y1 };
            for size in [1, 5, 16, 64] {
                let got = sampler.crop(field, size);
                let n = i64::from(size);
                let edges = |origin: i64, extent: i64, k: i64| {
                    let lo = origin + (k * extent).div_euclid(n);
                    (
                        lo,
                        (origin + ((k + 1) * extent + n - 1).div_euclid(n)).max(lo + 1),
                    )
                };
                for v in 0..n {
                    for u in 0..n {
                        let (xa, xb) = edges(x0, field.width().max(1), u);
                        let (ya, yb) = edges(y0, field.height().max(1), v);
                        let mut sums = [0u64; 3];
                        for y in ya..yb {
                            for x in xa..xb {
                                let inside = (0..i64::from(w)).contains(&x)
                                    && (0..i64::from(h)).contains(&y);
                                for (c, s) in sums.iter_mut().enumerate() {
                                    *s += if inside {
                                        u64::from(picture.get_pixel(x as u32, y as u32).0[c])
                                    } else {
                                        OUTSIDE
                                    };
                                }
                            }
                        }
                        let area = ((xb - xa) * (yb - ya)) as u64;
                        let want = sums.map(|s| ((s + area / 2) / area) as u8);
                        let at = got.get_pixel(u as u32, v as u32).0;
                        assert_eq!(at, want, "field {field:?}, size {size}, pixel ({u}, {v})");
                    }
                }
            }
        }
    }
}
