//! The one way ConvLens opens a wgpu instance without a window (the renderer's headless
//! context, the compute device probe): the native backends first (Vulkan, Metal, DX12), and
//! OpenGL only when none of them has an adapter. Probing the GL backend loads EGL, whose
//! Wayland platform prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment."
//! on every machine without a desktop session; an adapter found without GL never pays that.
//! `WGPU_BACKEND` (wgpu's own variable) still picks the backends exactly when set.
//!
//! Vulkan has the same noise from another source: Mesa's implicit `device_select` layer
//! connects to Wayland while the loader enumerates devices, and libwayland prints that line
//! (twice per enumeration). [`quiet_vulkan_device_select`] turns the layer off where there is
//! no desktop session for it to ask.

/// The instance to try first: the backends `WGPU_BACKEND` names, else the native ones.
pub fn primary() -> wgpu::Instance {
    instance(wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY))
}

/// The instance to try when [`primary`] has no adapter: every backend, GL included. `None`
/// when `WGPU_BACKEND` is set (the user's choice stands).
pub fn fallback() -> Option<wgpu::Instance> {
    wgpu::Backends::from_env()
        .is_none()
        .then(|| instance(wgpu::Backends::all()))
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Without a desktop session (`XDG_RUNTIME_DIR` unset or not a directory, no
/// `WAYLAND_DISPLAY`), sets `NODEVICE_SELECT=1`, which turns Mesa's Vulkan `device_select`
/// layer off: it only orders devices by the session's default GPU, which such a machine does
/// not have, and its Wayland probe prints "error: XDG_RUNTIME_DIR is invalid or not set in
/// the environment." on stderr. A value the user set is kept.
///
/// # Safety
/// Changes the process environment: call it first thing in `main`, before any other thread
/// exists (`std::env::set_var`'s requirement).
pub unsafe fn quiet_vulkan_device_select() {
    let session = std::env::var_os("WAYLAND_DISPLAY").is_some()
        || std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|dir| std::path::Path::new(&dir).is_dir());
    if !session && std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: the caller guarantees no other thread runs yet.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
