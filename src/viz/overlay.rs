//! Heat maps over pictures: a Grad-CAM (or any non-negative `[h, w]` map) upsampled
//! bilinearly to the picture, normalised by its maximum, coloured with a jet-like ramp and
//! blended over the picture — what the side canvas shows for a hovered class.

use image::{Rgb, RgbImage};

/// Colour of `t` in `[0, 1]`: dark blue → blue → cyan → yellow → red.
pub fn jet(t: f32) -> [f32; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 0.5],
        [0.0, 0.3, 1.0],
        [0.0, 0.9, 0.9],
        [1.0, 0.9, 0.0],
        [0.9, 0.0, 0.0],
    ];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    std::array::from_fn(|c| STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f)
}

/// Bilinear sample of a row-major `[h, w]` map at continuous pixel-centre coordinates.
fn sample(map: &[f32], [h, w]: [usize; 2], y: f32, x: f32) -> f32 {
    let y = y.clamp(0.0, (h - 1) as f32);
    let x = x.clamp(0.0, (w - 1) as f32);
    let (y0, x0) = (y.floor() as usize, x.floor() as usize);
    let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
    let (fy, fx) = (y - y0 as f32, x - x0 as f32);
    let at = |yy: usize, xx: usize| map[yy * w + xx];
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
    let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// `map` (`[h, w]`, row-major, non-finite values treated as 0) over `picture` with the heat
/// colour's weight `alpha`. A map that is all ≤ 0 leaves the picture unchanged.
pub fn heat_over(picture: &RgbImage, map: &[f32], map_hw: [usize; 2], alpha: f32) -> RgbImage {
    let [h, w] = map_hw;
    if h == 0 || w == 0 || map.len() != h * w {
        return picture.clone();
    }
    let clean: Vec<f32> = map
        .iter()
        .map(|v| if v.is_finite() { v.max(0.0) } else { 0.0 })
        .collect();
    let max = clean.iter().copied().fold(0.0f32, f32::max);
    if max <= 0.0 {
        return picture.clone();
    }
    let (pw, ph) = picture.dimensions();
    let (sy, sx) = (h as f32 / ph as f32, w as f32 / pw as f32);
    RgbImage::from_fn(pw, ph, |x, y| {
        let v = sample(
            &clean,
            map_hw,
            (y as f32 + 0.5) * sy - 0.5,
            (x as f32 + 0.5) * sx - 0.5,
        );
        let heat = jet(v / max);
        let p = picture.get_pixel(x, y).0;
        Rgb(std::array::from_fn(|c| {
            let blended = f32::from(p[c]) * (1.0 - alpha) + heat[c] * 255.0 * alpha;
            blended.round().clamp(0.0, 255.0) as u8
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_ends_and_monotone_red() {
        assert_eq!(jet(0.0), [0.0, 0.0, 0.5]);
        assert_eq!(jet(1.0), [0.9, 0.0, 0.0]);
        assert_eq!(jet(-3.0), jet(0.0));
        assert!(jet(0.75)[0] > jet(0.25)[0]);
    }

    #[test]
    fn hot_corner_lands_on_the_right_pixels() {
        let picture = RgbImage::from_pixel(8, 8, Rgb([100, 100, 100]));
        // 2×2 map: only the bottom-right cell is hot.
        let out = heat_over(&picture, &[0.0, 0.0, 0.0, 4.0], [2, 2], 0.5);
        let hot = out.get_pixel(7, 7).0;
        let cold = out.get_pixel(0, 0).0;
        // Bottom-right: heat 1.0 (red): (100 + 0.9·255)/2, 50, 50.
        assert_eq!(hot, [165, 50, 50]);
        // Top-left: heat 0 (dark blue): 50, 50, (100 + 0.5·255)/2.
        assert_eq!(cold, [50, 50, 114]);
        // Non-positive or empty maps leave the picture alone.
        assert_eq!(heat_over(&picture, &[-1.0; 4], [2, 2], 0.5), picture);
        assert_eq!(heat_over(&picture, &[], [0, 0], 0.5), picture);
    }
}
