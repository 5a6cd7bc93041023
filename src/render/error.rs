//! The render module's one error type, [`RenderError`], carrying what went wrong and with what.

use thiserror::Error;

/// Everything that can fail while creating GPU objects, uploading data, drawing or reading back.
#[derive(Debug, Error)]
pub enum RenderError {
    /// No adapter was found, even after asking for a software (fallback) adapter.
    #[error(
        "no GPU adapter found (also tried a software fallback; on Linux install \
         `mesa-vulkan-drivers` for lavapipe): {0}"
    )]
    NoAdapter(#[source] wgpu::RequestAdapterError),

    /// The adapter refused to open a device with its own features and limits.
    #[error("could not open a device on adapter '{adapter}': {error}")]
    RequestDevice {
        /// Adapter name as reported by the driver.
        adapter: String,
        /// The driver's error.
        error: wgpu::RequestDeviceError,
    },

    /// A window surface could not be created.
    #[error("could not create a window surface: {0}")]
    CreateSurface(wgpu::CreateSurfaceError),

    /// burn refused to run on this context's device.
    #[error("burn cannot use the renderer's wgpu device '{adapter}': {detail}")]
    ShareWithBurn {
        /// Adapter name.
        adapter: String,
        /// burn's reason.
        detail: String,
    },

    /// The chosen adapter cannot present to the window's surface.
    #[error("adapter '{adapter}' cannot present to this window surface")]
    SurfaceUnsupported {
        /// Adapter name.
        adapter: String,
    },

    /// The surface was lost and this target has no window to recreate it from.
    #[error("window surface lost and cannot be recreated (no window handle kept)")]
    SurfaceLost,

    /// Acquiring the next surface texture raised a validation error.
    #[error("validation error while acquiring the next surface texture")]
    SurfaceValidation,

    /// A render target size that is zero or above the device limit.
    #[error("invalid target size {width}x{height}: each side must be in 1..={max}")]
    InvalidSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// `max_texture_dimension_2d` of the device.
        max: u32,
    },

    /// Tile data whose length does not match its declared shape.
    #[error(
        "tile data has {got} values, expected {count} tile(s) of {width}x{height} = {expected}"
    )]
    TileDataLength {
        /// Values supplied.
        got: usize,
        /// `width * height * count`.
        expected: usize,
        /// Tile width.
        width: u32,
        /// Tile height.
        height: u32,
        /// Number of tiles.
        count: u32,
    },

    /// A tile (or batch) with no texels.
    #[error("empty tile upload: {count} tile(s) of {width}x{height}")]
    EmptyTile {
        /// Tile width.
        width: u32,
        /// Tile height.
        height: u32,
        /// Number of tiles.
        count: u32,
    },

    /// Every atlas layer the device allows is full.
    #[error(
        "tile atlas full: {used} of {layers} layer(s) x {layer_size}x{layer_size} texels used, \
         {wanted} more wanted; clear() it or show fewer tiles"
    )]
    AtlasFull {
        /// Layers the atlas may use.
        layers: u32,
        /// Side of one layer.
        layer_size: u32,
        /// Texels in use.
        used: u64,
        /// Texels asked for.
        wanted: u64,
    },

    /// A GPU buffer copy that reaches past the end of its source or is misaligned.
    #[error(
        "buffer copy of {len} bytes at offset {offset} is invalid for a buffer of {size} bytes \
         (offsets must be multiples of 4)"
    )]
    BufferRange {
        /// Byte offset asked for.
        offset: u64,
        /// Bytes to copy.
        len: u64,
        /// Size of the source buffer.
        size: u64,
    },

    /// A burn tensor could not be copied into the atlas on the GPU (wrong device, dtype or
    /// layout, or burn refused the buffer).
    #[error("zero-copy tensor → atlas: {0}")]
    TensorCopy(String),

    /// Mapping a readback buffer failed.
    #[error("readback failed: could not map the buffer: {0}")]
    Map(wgpu::BufferAsyncError),

    /// Waiting for the device failed (device lost, timeout).
    #[error("readback failed: waiting for the GPU: {0}")]
    Poll(wgpu::PollError),

    /// The map callback never reported back.
    #[error("readback failed: the buffer map callback never ran")]
    MapCallbackLost,

    /// Read-back pixels do not form an image of the expected size.
    #[error("readback failed: got {got} bytes for a {width}x{height} RGBA image")]
    ReadbackSize {
        /// Bytes read.
        got: usize,
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },

    /// The target texture format cannot be read back as 8-bit RGBA.
    #[error("cannot read back texture format {0:?} as RGBA8")]
    UnsupportedFormat(wgpu::TextureFormat),

    /// glyphon's glyph atlas could not grow to hold this frame's text.
    #[error("text: {0}")]
    TextPrepare(glyphon::PrepareError),

    /// glyphon could not record its draw.
    #[error("text: {0}")]
    TextRender(glyphon::RenderError),

    /// wgpu reported a validation error inside an error scope.
    #[error("GPU validation error during {during}: {message}")]
    Validation {
        /// What the renderer was doing.
        during: &'static str,
        /// wgpu's message.
        message: String,
    },
}

// The variants above print the wrapped error in their message, so they do not also return it
// as `source()` (no `#[from]`, which implies `#[source]`): a chain printer shows each cause once.
impl From<wgpu::CreateSurfaceError> for RenderError {
    fn from(error: wgpu::CreateSurfaceError) -> Self {
        Self::CreateSurface(error)
    }
}

impl From<wgpu::BufferAsyncError> for RenderError {
    fn from(error: wgpu::BufferAsyncError) -> Self {
        Self::Map(error)
    }
}

impl From<wgpu::PollError> for RenderError {
    fn from(error: wgpu::PollError) -> Self {
        Self::Poll(error)
    }
}

impl From<glyphon::PrepareError> for RenderError {
    fn from(error: glyphon::PrepareError) -> Self {
        Self::TextPrepare(error)
    }
}

impl From<glyphon::RenderError> for RenderError {
    fn from(error: glyphon::RenderError) -> Self {
        Self::TextRender(error)
    }
}
