//! Choosing where tensors live: a real GPU through burn's wgpu runtime when one is present
//! (or asked for), else burn's `flex` CPU backend. `gpu` on a machine without a GPU uses
//! whatever adapter wgpu finds (Mesa's software Vulkan in CI).

use super::kernels::simd::{self, SimdLevel};
use burn::tensor::Device;

/// The user's `--device` choice (parsed by the CLI, which words its help).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// A real (discrete or integrated) GPU if wgpu finds one, else the CPU.
    #[default]
    Auto,
    /// burn's flex CPU backend.
    Cpu,
    /// burn's wgpu backend on the default adapter (a software adapter if that is all there is).
    Gpu,
}

/// A resolved compute device and a human description of it.
#[derive(Debug, Clone)]
pub struct ComputeDevice {
    pub device: Device,
    pub description: String,
    pub is_gpu: bool,
    /// Why the device is not the one asked for (`gpu` without an adapter), for the caller to
    /// show.
    pub warning: Option<String>,
}

/// Resolves the choice. `Auto` probes wgpu's adapters without creating a device.
pub fn select(choice: DeviceChoice) -> ComputeDevice {
    match choice {
        DeviceChoice::Cpu => cpu(),
        DeviceChoice::Gpu => match adapter_summary() {
            Some((name, _)) => gpu(name),
            None => {
                let mut d = cpu();
                d.description = "cpu (burn flex) — no GPU adapter found".into();
                d.warning =
                    Some("--device gpu: wgpu finds no adapter; computing on the CPU".into());
                d
            }
        },
        DeviceChoice::Auto => match adapter_summary() {
            Some((name, true)) => gpu(name),
            _ => cpu(),
        },
    }
}

fn cpu() -> ComputeDevice {
    ComputeDevice {
        device: Device::flex(),
        description: "cpu (burn flex)".into(),
        is_gpu: false,
        warning: None,
    }
}

fn gpu(adapter: String) -> ComputeDevice {
    ComputeDevice {
        device: Device::default(),
        description: format!("gpu (burn wgpu: {adapter})"),
        is_gpu: true,
        warning: None,
    }
}

/// Name of wgpu's preferred adapter and whether it is real hardware.
pub fn adapter_summary() -> Option<(String, bool)> {
    let request = |instance: wgpu::Instance| {
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .ok()
    };
    let adapter = request(crate::gpu_instance::primary())
        .or_else(|| crate::gpu_instance::fallback().and_then(request))?;
    let info = adapter.get_info();
    let hardware = matches!(
        info.device_type,
        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
    );
    Some((
        format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type),
        hardware,
    ))
}

/// Which CPU kernels this process runs, in words (for `convlens --version` and `bench`):
/// the [`SimdLevel`] (detected, or forced by `CONVLENS_CPU_KERNELS`), then the convolution
/// GEMM (the `gemm` crate, which picks its own FMA or scalar kernels at run time), the
/// depthwise convolution and the sparse-gradient scatter.
pub fn cpu_kernel_path() -> String {
    let level = simd::active();
    let how = match (std::env::var(simd::ENV).is_ok(), simd::refused_request()) {
        (_, Some(why)) => format!(" ({why})"),
        (true, None) => format!(" (forced by {})", simd::ENV),
        (false, None) => " (detected)".to_string(),
    };
    let gemm = "conv GEMM: gemm crate (its run-time choice)";
    let depthwise = match level {
        SimdLevel::Avx512 => "depthwise: AVX-512",
        SimdLevel::Avx2Fma => "depthwise: AVX2+FMA",
        SimdLevel::Portable => "depthwise: portable",
    };
    let scatter = if level >= SimdLevel::Avx2Fma {
        "sparse gradients: AVX2+FMA"
    } else {
        "sparse gradients: portable"
    };
    format!(
        "{} ({}); kernels: {}{how}; {gemm}; {depthwise}; {scatter}",
        std::env::consts::ARCH,
        cpu_isa(),
        level.name()
    )
}

/// The SIMD levels this CPU has that the kernels use.
fn cpu_isa() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut have = Vec::new();
        if std::arch::is_x86_feature_detected!("avx512f") {
            have.push("avx512f");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            have.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            have.push("fma");
        }
        if have.is_empty() {
            "no AVX".to_string()
        } else {
            have.join(" ")
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon".to_string()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "portable".to_string()
    }
}

/// Makes the process's allocator keep freed memory for reuse. On the CPU every large tensor
/// (a chunk of seed gradients is 100+ MB) would otherwise be a fresh `mmap` that the kernel
/// zero-fills page by page on first touch and unmaps again when freed: in guided backprop of
/// an AlexNet-shaped network about a quarter of the time went to those page faults. With
/// glibc's `mmap` path off, large blocks come from the heap, whose freed space is reused;
/// the peak resident size is unchanged, but memory is returned to the system only at exit.
/// All threads share that one heap (one arena): the forward walk runs on a rayon worker,
/// whose own arena could not grow past 64 MiB without `mmap` and fell back to fresh pages —
/// EfficientNet-Lite0 at 16 images per pass, 2-core AMD EPYC: 56–66 img/s with per-thread
/// arenas, 96–112 with one.
/// Call it first thing in `main`, before other threads start. A no-op off glibc.
pub fn retain_freed_host_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
