//! The renderer's one adapter to burn (no other file of `render/` names burn or cubecl):
//! [`GpuContext::burn_device`] registers the renderer's wgpu device with burn's runtime, and
//! the zero-copy path from burn to the screen copies a `[C, H, W]` activation tensor that
//! lives on that device into the tile atlas, buffer-to-texture on the GPU; only the `2·C` normalisation bounds come back to the
//! CPU. Tensors on any other device (flex, a second wgpu device) use the CPU upload path
//! ([`TileAtlas::upload_maps`]) instead; [`copy_maps_or_upload`] picks.
//!
//! Ordering: the per-tile ranges are read back first, which waits for every kernel burn has
//! queued for the tensor; the buffer-to-texture copy is then submitted on the same queue, so
//! it sees the finished values. The allocation stays pinned (burn will not reuse it) while the
//! copy is recorded and submitted.

use burn::tensor::{Tensor, TensorData};

use crate::render::{GpuContext, ReadyTiles, RenderError, Result, TileAtlas};

/// The burn device a [`GpuContext`] registered, shared by the context's clones.
pub(super) type SharedBurnDevice = std::sync::Arc<std::sync::Mutex<Option<burn::tensor::Device>>>;

impl GpuContext {
    /// Registers this context's instance, adapter, device and queue with burn's wgpu runtime
    /// and returns the burn device that runs on them: tensors and the renderer then share one
    /// device and one queue. Registers once per context (and its clones); later calls return
    /// the same burn device.
    pub fn burn_device(&self) -> Result<burn::tensor::Device> {
        let mut shared = self
            .shared_burn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(device) = shared.as_ref() {
            return Ok(device.clone());
        }
        let setup = burn::tensor::wgpu::WgpuSetup {
            instance: self.instance.clone(),
            adapter: self.adapter.clone(),
            device: self.device.clone(),
            queue: self.queue.clone(),
            backend: self.adapter_info.backend,
        };
        let device = burn::tensor::Device::wgpu_options()
            .setup(setup)
            .init()
            .map_err(|e| RenderError::ShareWithBurn {
                adapter: self.adapter_info.name.clone(),
                detail: e.to_string(),
            })?;
        *shared = Some(device.clone());
        Ok(device)
    }

    /// The burn device sharing this context's device and queue, once
    /// [`GpuContext::burn_device`] has registered it.
    pub fn shared_burn_device(&self) -> Option<burn::tensor::Device> {
        self.shared_burn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The burn backend whose primitive is a [`burn::backend::wgpu::CubeTensor`] on wgpu.
type WgpuBackend = burn::backend::Wgpu;
/// The cubecl server behind burn's wgpu runtime (for [`cubecl_wgpu::WgpuResource`] access).
type WgpuServer = cubecl_wgpu::WgpuServer<cubecl_wgpu::AutoCompiler>;

/// How a layer's maps reached the atlas (for reports and the frame counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtlasFill {
    /// Buffer-to-texture copy on the GPU; only the ranges were read back.
    ZeroCopy,
    /// Read back to (or already on) the CPU, then written with `queue.write_texture`.
    Upload,
}

/// Per-map `[min, max]` over finite values of `maps` (`[C, H, W]`), computed by burn on the
/// tensor's device: `[0, 0]` for a map without finite values, like
/// [`crate::render::value_range`].
pub fn map_ranges(maps: &Tensor<3>) -> Result<Vec<[f32; 2]>> {
    let [c, h, w] = maps.dims();
    // [C, H·W]
    let flat = maps.clone().reshape([c, h * w]);
    // Plain min/max first (three kernels, one readback); only maps with a NaN or infinity
    // (which poison min/max) take the masked pass.
    let ranges = read_ranges(flat.clone().min_dim(1), flat.clone().max_dim(1))?;
    if ranges.iter().flatten().all(|v| v.is_finite()) {
        return Ok(ranges);
    }
    let bad = flat.clone().is_nan().bool_or(flat.clone().is_inf());
    let lo = flat
        .clone()
        .mask_fill(bad.clone(), f32::INFINITY)
        .min_dim(1);
    let hi = flat.mask_fill(bad, f32::NEG_INFINITY).max_dim(1);
    Ok(read_ranges(lo, hi)?
        .into_iter()
        .map(|r| {
            if r[0].is_finite() && r[1].is_finite() {
                r
            } else {
                [0.0, 0.0]
            }
        })
        .collect())
}

/// `[min, max]` pairs from per-map minima and maxima (`[C, 1]` each), in one readback.
fn read_ranges(lo: Tensor<2>, hi: Tensor<2>) -> Result<Vec<[f32; 2]>> {
    // [C, 2]
    let both: TensorData = Tensor::cat(vec![lo, hi], 1).into_data();
    let values = both
        .try_to_vec::<f32>()
        .map_err(|e| RenderError::TensorCopy(format!("reading the map ranges: {e:?}")))?;
    Ok(values.chunks_exact(2).map(|p| [p[0], p[1]]).collect())
}

/// Copies every map of `maps` (`[C, H, W]`, `f32`, on `ctx`'s shared burn device) into
/// `atlas` without a CPU round trip and returns each tile with its `[min, max]`.
///
/// Errors ([`RenderError::TensorCopy`]) when the tensor is elsewhere (another device, flex),
/// not `f32`, or not contiguous; [`copy_maps_or_upload`] falls back to the CPU path then.
pub fn copy_maps(atlas: &mut TileAtlas, ctx: &GpuContext, maps: Tensor<3>) -> Result<ReadyTiles> {
    let [c, h, w] = maps.dims();
    let shared = ctx
        .shared_burn_device()
        .ok_or_else(|| RenderError::TensorCopy("this context is not shared with burn".into()))?;
    if maps.device() != shared {
        return Err(RenderError::TensorCopy(
            "the tensor is not on the renderer's device".into(),
        ));
    }
    let (count, height, width) = (to_u32(c)?, to_u32(h)?, to_u32(w)?);
    let ranges = map_ranges(&maps)?;
    let cube = maps
        .try_into_primitive::<WgpuBackend>()
        .map_err(|e| RenderError::TensorCopy(format!("not a wgpu tensor: {e:?}")))?;
    if cube.dtype != burn::tensor::DType::F32 {
        return Err(RenderError::TensorCopy(format!(
            "dtype {:?}, the atlas holds f32",
            cube.dtype
        )));
    }
    let (shape, strides) = (cube.meta.shape(), cube.meta.strides());
    if !is_row_major(shape.as_ref(), strides.as_ref()) {
        return Err(RenderError::TensorCopy(format!(
            "strides {:?} of shape {:?} are not row-major",
            strides.as_ref(),
            shape.as_ref()
        )));
    }
    let resource = cube
        .client
        .get_resource::<WgpuServer>(cube.handle.clone())
        .map_err(|e| RenderError::TensorCopy(format!("buffer of the tensor: {e:?}")))?;
    let buffer = resource.resource();
    let handles = atlas.copy_from_buffer(
        &ctx.device,
        &ctx.queue,
        &buffer.buffer,
        buffer.offset,
        width,
        height,
        count,
    )?;
    drop(resource);
    Ok(handles.into_iter().zip(ranges).collect())
}

/// [`copy_maps`] when the tensor is on the renderer's device (and laid out row-major), else a
/// readback and [`TileAtlas::upload_maps`]. Returns the tiles and which path filled them.
pub fn copy_maps_or_upload(
    atlas: &mut TileAtlas,
    ctx: &GpuContext,
    maps: Tensor<3>,
) -> Result<(ReadyTiles, AtlasFill)> {
    // A clone is another handle to the same buffer, kept for the fallback; copy_maps refuses
    // a tensor on another device before doing any work.
    if let Ok(tiles) = copy_maps(atlas, ctx, maps.clone()) {
        return Ok((tiles, AtlasFill::ZeroCopy));
    }
    let [c, h, w] = maps.dims();
    let values = maps
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| RenderError::TensorCopy(format!("reading the maps back: {e:?}")))?;
    let tiles = atlas.upload_maps(
        &ctx.device,
        &ctx.queue,
        &values,
        to_u32(w)?,
        to_u32(h)?,
        to_u32(c)?,
    )?;
    Ok((tiles, AtlasFill::Upload))
}

fn to_u32(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| RenderError::TensorCopy(format!("dimension {n} exceeds u32")))
}

/// Whether `strides` are the dense row-major strides of `shape` (size-1 axes may have any).
pub fn is_row_major(shape: &[usize], strides: &[usize]) -> bool {
    if shape.len() != strides.len() {
        return false;
    }
    let mut expected = 1usize;
    for (&dim, &stride) in shape.iter().zip(strides).rev() {
        if dim != 1 && stride != expected {
            return false;
        }
        expected = expected.saturating_mul(dim);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_major_strides_are_recognised() {
        assert!(is_row_major(&[3, 4, 5], &[20, 5, 1]));
        assert!(is_row_major(&[1, 4, 5], &[999, 5, 1]));
        assert!(!is_row_major(&[3, 4, 5], &[1, 3, 12]));
        assert!(!is_row_major(&[3, 4], &[4, 1, 1]));
        assert!(is_row_major(&[], &[]));
    }
}
