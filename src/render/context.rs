//! The wgpu instance/adapter/device/queue ([`GpuContext`]) and the window swapchain
//! ([`SurfaceTarget`]: configure, resize, minimise, `Outdated`/`Lost` recovery).
//!
//! The device is opened with **all** of the adapter's features and limits so that burn can run
//! on the very same device ([`super::burn_bridge`] registers it) and its activation buffers can
//! be copied into the tile atlas directly.

use std::sync::Arc;

use crate::render::{RenderError, Result};

/// One wgpu device shared by the renderer and (later) burn.
#[derive(Debug, Clone)]
pub struct GpuContext {
    /// The instance the adapter and any surface come from.
    pub instance: wgpu::Instance,
    /// The physical device.
    pub adapter: wgpu::Adapter,
    /// The logical device, opened with the adapter's full features and limits.
    pub device: wgpu::Device,
    /// The device's queue.
    pub queue: wgpu::Queue,
    /// Name, backend and type of the adapter (for logs, `--version` and bench reports).
    pub adapter_info: wgpu::AdapterInfo,
    /// The burn device registered on this device and queue by [`GpuContext::burn_device`]
    /// (shared by clones of the context); tensors on it can be copied into the atlas on the
    /// GPU ([`crate::render::burn_bridge`]).
    pub(super) shared_burn: super::burn_bridge::SharedBurnDevice,
}

impl GpuContext {
    /// A context without any window: the default adapter, or a software adapter (e.g. Mesa
    /// lavapipe) when there is no GPU. Honours `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and
    /// `WGPU_POWER_PREF`.
    pub fn headless() -> Result<Self> {
        pollster::block_on(Self::headless_async())
    }

    /// Async form of [`GpuContext::headless`].
    pub async fn headless_async() -> Result<Self> {
        let instance = crate::gpu_instance::primary();
        let first_error = match pick_adapter(&instance, None).await {
            Ok(adapter) => return Self::from_adapter(instance, adapter).await,
            Err(e) => e,
        };
        if let Some(instance) = crate::gpu_instance::fallback()
            && let Ok(adapter) = pick_adapter(&instance, None).await
        {
            return Self::from_adapter(instance, adapter).await;
        }
        Err(first_error)
    }

    /// A context for a window that does not exist yet: the instance knows the display (pass
    /// the event loop's display handle, see [`GpuContext::for_window`]), the adapter is the
    /// default one. Its device can be handed to burn before the window opens; the window's
    /// surface comes later from [`GpuContext::surface_for_window`].
    pub fn for_display(display: Option<Box<dyn wgpu::wgt::WgpuHasDisplayHandle>>) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.display = display;
        let instance = wgpu::Instance::new(desc);
        pollster::block_on(async {
            let adapter = pick_adapter(&instance, None).await?;
            Self::from_adapter(instance, adapter).await
        })
    }

    /// A surface for `window` on this context's instance, configured for this device; an
    /// error if the adapter cannot present to it (then open a separate context with
    /// [`GpuContext::for_window`]).
    pub fn surface_for_window(
        &self,
        window: Arc<dyn wgpu::DisplayAndWindowHandle>,
        has_display: bool,
        width: u32,
        height: u32,
    ) -> Result<SurfaceTarget> {
        let surface = create_surface(&self.instance, &window, has_display)?;
        if !self.adapter.is_surface_supported(&surface) {
            return Err(RenderError::SurfaceUnsupported {
                adapter: self.adapter_info.name.clone(),
            });
        }
        SurfaceTarget::new(self, surface, Some((window, has_display)), width, height)
    }

    /// A context whose adapter can present to `surface` (created from `instance`).
    pub fn with_surface(instance: wgpu::Instance, surface: &wgpu::Surface<'_>) -> Result<Self> {
        pollster::block_on(async {
            let adapter = pick_adapter(&instance, Some(surface)).await?;
            Self::from_adapter(instance, adapter).await
        })
    }

    /// Creates the instance, the window's surface, a compatible device and a configured
    /// [`SurfaceTarget`] of `width`×`height` physical pixels. Pass the event loop's display
    /// handle (winit: `Box::new(event_loop.owned_display_handle())`) as `display` — the GL
    /// backend needs it on Wayland; Vulkan ignores it.
    pub fn for_window(
        window: Arc<dyn wgpu::DisplayAndWindowHandle>,
        display: Option<Box<dyn wgpu::wgt::WgpuHasDisplayHandle>>,
        width: u32,
        height: u32,
    ) -> Result<(Self, SurfaceTarget)> {
        let has_display = display.is_some();
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.display = display;
        let instance = wgpu::Instance::new(desc);
        let surface = create_surface(&instance, &window, has_display)?;
        let ctx = Self::with_surface(instance, &surface)?;
        let target = SurfaceTarget::new(&ctx, surface, Some((window, has_display)), width, height)?;
        Ok((ctx, target))
    }

    /// Opens a device on `adapter` with all of its features (except the experimental ones and
    /// `MAPPABLE_PRIMARY_BUFFERS`, which slows discrete GPUs) and all of its limits.
    pub async fn from_adapter(instance: wgpu::Instance, adapter: wgpu::Adapter) -> Result<Self> {
        let adapter_info = adapter.get_info();
        let features = adapter
            .features()
            .difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS)
            .difference(wgpu::Features::all_experimental_mask());
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("convlens device"),
                required_features: features,
                required_limits: adapter.limits(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|source| RenderError::RequestDevice {
                adapter: adapter_info.name.clone(),
                error: source,
            })?;
        Ok(Self {
            instance,
            adapter,
            device,
            queue,
            adapter_info,
            shared_burn: Arc::default(),
        })
    }

    /// Largest 2-D texture side the device accepts (render targets, atlas layers).
    pub fn max_texture_side(&self) -> u32 {
        self.device.limits().max_texture_dimension_2d
    }

    /// True for CPU (software) adapters such as lavapipe or llvmpipe.
    pub fn is_software(&self) -> bool {
        self.adapter_info.device_type == wgpu::DeviceType::Cpu
    }

    /// One line describing the adapter, e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.adapter_info.name, self.adapter_info.backend, self.adapter_info.device_type
        )
    }

    /// Blocks until all submitted GPU work is done.
    pub fn wait_idle(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        Ok(())
    }
}

/// Adapter choice: `WGPU_ADAPTER_NAME` if set and matching, else the default (high-performance)
/// adapter, else a fallback (software) adapter.
async fn pick_adapter(
    instance: &wgpu::Instance,
    surface: Option<&wgpu::Surface<'_>>,
) -> Result<wgpu::Adapter> {
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let wanted = wanted.to_lowercase();
        for adapter in instance.enumerate_adapters(wgpu::Backends::all()).await {
            let name_ok = adapter.get_info().name.to_lowercase().contains(&wanted);
            if name_ok && surface.is_none_or(|s| adapter.is_surface_supported(s)) {
                return Ok(adapter);
            }
        }
    }
    let mut options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::from_env()
            .unwrap_or(wgpu::PowerPreference::HighPerformance),
        force_fallback_adapter: false,
        compatible_surface: surface,
        apply_limit_buckets: false,
    };
    match instance.request_adapter(&options).await {
        Ok(adapter) => Ok(adapter),
        Err(first) => {
            options.force_fallback_adapter = true;
            instance
                .request_adapter(&options)
                .await
                .map_err(|_| RenderError::NoAdapter(first))
        }
    }
}

fn create_surface(
    instance: &wgpu::Instance,
    window: &Arc<dyn wgpu::DisplayAndWindowHandle>,
    instance_has_display: bool,
) -> Result<wgpu::Surface<'static>> {
    let target = if instance_has_display {
        wgpu::SurfaceTarget::from_window_without_display(window.clone())
    } else {
        wgpu::SurfaceTarget::from(window.clone())
    };
    Ok(instance.create_surface(target)?)
}

/// A configured window surface. Resizes to 0×0 (minimised windows) are remembered but not
/// applied; frames are skipped until the window has an area again.
pub struct SurfaceTarget {
    surface: wgpu::Surface<'static>,
    /// The window, kept to recreate a lost surface, and whether the instance has its display.
    window: Option<(Arc<dyn wgpu::DisplayAndWindowHandle>, bool)>,
    config: wgpu::SurfaceConfiguration,
    /// False while the window has no area (nothing is configured for that size).
    has_area: bool,
    /// Set when the last frame was suboptimal; reconfigured before the next acquire.
    reconfigure: bool,
}

/// What [`SurfaceTarget::acquire`] got.
#[derive(Debug)]
pub enum SurfaceFrame {
    /// Draw into this texture, submit, then `queue.present(texture)`.
    Ready(wgpu::SurfaceTexture),
    /// Nothing to draw this time (minimised, occluded, timeout, just reconfigured); redraw later.
    Skip,
}

impl SurfaceTarget {
    /// Configures `surface` at `width`×`height`; prefers an sRGB format and vsync (`Fifo`).
    /// `window` (with "instance has the display handle") lets a lost surface be recreated.
    pub fn new(
        ctx: &GpuContext,
        surface: wgpu::Surface<'static>,
        window: Option<(Arc<dyn wgpu::DisplayAndWindowHandle>, bool)>,
        width: u32,
        height: u32,
    ) -> Result<Self> {
        let caps = surface.get_capabilities(&ctx.adapter);
        let Some(&first) = caps.formats.first() else {
            return Err(RenderError::SurfaceUnsupported {
                adapter: ctx.adapter_info.name.clone(),
            });
        };
        let format = caps
            .formats
            .iter()
            .copied()
            .find(wgpu::TextureFormat::is_srgb)
            .unwrap_or(first);
        let alpha_mode = caps
            .alpha_modes
            .first()
            .copied()
            .unwrap_or(wgpu::CompositeAlphaMode::Auto);
        let config = wgpu::SurfaceConfiguration {
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            format,
            color_space: wgpu::SurfaceColorSpace::Auto,
            width: width.max(1),
            height: height.max(1),
            desired_maximum_frame_latency: 2,
            present_mode: wgpu::PresentMode::Fifo,
            alpha_mode,
            view_formats: vec![],
        };
        let mut target = Self {
            surface,
            window,
            config,
            has_area: false,
            reconfigure: false,
        };
        target.resize(ctx, width, height);
        Ok(target)
    }

    /// The swapchain format (build the [`crate::render::Renderer`] for this format).
    pub fn format(&self) -> wgpu::TextureFormat {
        self.config.format
    }

    /// Current size in physical pixels (the last non-zero size).
    pub fn size(&self) -> [u32; 2] {
        [self.config.width, self.config.height]
    }

    /// True while the window is minimised (last resize was to zero area).
    pub fn is_minimised(&self) -> bool {
        !self.has_area
    }

    /// Switches vsync (`Fifo`) or uncapped (`AutoNoVsync`, for frame-time measurements).
    pub fn set_vsync(&mut self, ctx: &GpuContext, vsync: bool) {
        self.config.present_mode = if vsync {
            wgpu::PresentMode::Fifo
        } else {
            wgpu::PresentMode::AutoNoVsync
        };
        if self.has_area {
            self.surface.configure(&ctx.device, &self.config);
        }
    }

    /// Applies a window resize; a 0×0 (minimised) size is ignored until the window returns.
    pub fn resize(&mut self, ctx: &GpuContext, width: u32, height: u32) {
        if width == 0 || height == 0 {
            self.has_area = false;
            return;
        }
        let max = ctx.max_texture_side();
        self.config.width = width.min(max);
        self.config.height = height.min(max);
        self.surface.configure(&ctx.device, &self.config);
        self.has_area = true;
        self.reconfigure = false;
    }

    /// Gets the next texture to draw into. `Timeout`/`Occluded` and a just-repaired
    /// `Outdated`/`Lost` surface give [`SurfaceFrame::Skip`] (request another redraw);
    /// a lost surface without a window, or a validation error, is an error.
    pub fn acquire(&mut self, ctx: &GpuContext) -> Result<SurfaceFrame> {
        if !self.has_area {
            return Ok(SurfaceFrame::Skip);
        }
        if self.reconfigure {
            self.surface.configure(&ctx.device, &self.config);
            self.reconfigure = false;
        }
        match self.surface.get_current_texture() {
            wgpu::CurrentSurfaceTexture::Success(texture) => Ok(SurfaceFrame::Ready(texture)),
            wgpu::CurrentSurfaceTexture::Suboptimal(texture) => {
                self.reconfigure = true;
                Ok(SurfaceFrame::Ready(texture))
            }
            wgpu::CurrentSurfaceTexture::Timeout | wgpu::CurrentSurfaceTexture::Occluded => {
                Ok(SurfaceFrame::Skip)
            }
            wgpu::CurrentSurfaceTexture::Outdated => {
                self.surface.configure(&ctx.device, &self.config);
                Ok(SurfaceFrame::Skip)
            }
            wgpu::CurrentSurfaceTexture::Lost => {
                let Some((window, has_display)) = &self.window else {
                    return Err(RenderError::SurfaceLost);
                };
                self.surface = create_surface(&ctx.instance, window, *has_display)?;
                self.surface.configure(&ctx.device, &self.config);
                Ok(SurfaceFrame::Skip)
            }
            wgpu::CurrentSurfaceTexture::Validation => Err(RenderError::SurfaceValidation),
        }
    }
}
