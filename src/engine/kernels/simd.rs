//! Which SIMD level the host kernels run at ([`SimdLevel`]): the best the CPU has, detected
//! once, or the one `CONVLENS_CPU_KERNELS` (`avx512`, `avx2` or `portable`) asks for, so each
//! path can be measured and tested on one machine. A level the CPU lacks is refused (the
//! detected one runs, and [`refused_request`] says why). The kernels that dispatch on it
//! (most through [`run_at_level`]): the depthwise convolution ([`super::depthwise`]), the
//! direct one ([`super::direct`]), the 16-lane transposes ([`super::lanes`]) and the
//! sparse-gradient scatter ([`super::sparse_grad`]). The GEMM behind the other convolutions
//! is the `gemm` crate's, which picks its own kernels (FMA where the CPU has it) and cannot
//! be forced.

use std::sync::OnceLock;

/// The environment variable that forces a [`SimdLevel`].
pub const ENV: &str = "CONVLENS_CPU_KERNELS";

/// A family of kernels, ordered from the most portable to the widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// Plain Rust at the build's baseline (SSE2 on x86-64, NEON on aarch64).
    Portable,
    /// x86-64 with AVX2 and FMA (most laptops and desktops).
    Avx2Fma,
    /// x86-64 with AVX-512F, AVX2 and FMA (servers, some Intel and AMD Zen 4+ desktops).
    Avx512,
}

impl SimdLevel {
    /// Every level, most portable first.
    pub const ALL: [SimdLevel; 3] = [Self::Portable, Self::Avx2Fma, Self::Avx512];

    /// The name `CONVLENS_CPU_KERNELS` takes and reports print.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2Fma => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// The level named `name` (case-insensitive), if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run the level's kernels.
    pub fn supported(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            // Each level includes the ones below it (every AVX-512 CPU has AVX2 and FMA).
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f") && Self::Avx2Fma.supported()
            }
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2Fma | Self::Avx512 => false,
        }
    }

    /// The widest level this CPU supports.
    pub fn detected() -> Self {
        Self::ALL
            .into_iter()
            .rev()
            .find(|l| l.supported())
            .unwrap_or(Self::Portable)
    }

    /// Every level this CPU supports, most portable first (the kernel tests run each).
    pub fn supported_levels() -> Vec<Self> {
        Self::ALL.into_iter().filter(|l| l.supported()).collect()
    }
}

/// The level chosen for this process and, when `CONVLENS_CPU_KERNELS` asked for something
/// else, why that was refused.
fn choice() -> &'static (SimdLevel, Option<String>) {
    static CHOICE: OnceLock<(SimdLevel, Option<String>)> = OnceLock::new();
    CHOICE.get_or_init(|| {
        let detected = SimdLevel::detected();
        let Ok(asked) = std::env::var(ENV) else {
            return (detected, None);
        };
        match SimdLevel::parse(&asked) {
            Some(level) if level.supported() => (level, None),
            Some(level) => (
                detected,
                Some(format!(
                    "{ENV}={asked} refused: this CPU cannot run {} kernels; using {}",
                    level.name(),
                    detected.name()
                )),
            ),
            None => (
                detected,
                Some(format!(
                    "{ENV}={asked} is not a kernel level (avx512, avx2 or portable); using {}",
                    detected.name()
                )),
            ),
        }
    })
}

/// The level the host kernels run at in this process.
pub fn active() -> SimdLevel {
    choice().0
}

/// Why `CONVLENS_CPU_KERNELS` was not followed, when it was set to something this CPU
/// cannot run or to no level at all.
pub fn refused_request() -> Option<&'static str> {
    choice().1.as_deref()
}

/// Runs `$body::<FMA>($arg)` (an `#[inline(always)]` function of one argument of type `$ty`)
/// compiled for `$level`: the AVX-512 and AVX2 levels each get a `#[target_feature]` copy
/// with fused multiply-adds (`FMA = true`), the portable level the baseline build without
/// them. The kernels' one way into target-feature code; `$level` must be one the CPU
/// supports ([`active`], or a level checked with [`SimdLevel::supported`]).
macro_rules! run_at_level {
    ($level:expr, $body:ident, $arg:expr, $ty:ty) => {{
        let level: $crate::engine::kernels::simd::SimdLevel = $level;
        let arg: $ty = $arg;
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,fma")]
            fn avx512(arg: $ty) {
                $body::<true>(arg)
            }
            #[target_feature(enable = "avx2,fma")]
            fn avx2(arg: $ty) {
                $body::<true>(arg)
            }
            match level {
                // SAFETY (both): the caller passes only levels the CPU supports.
                $crate::engine::kernels::simd::SimdLevel::Avx512 => unsafe { avx512(arg) },
                $crate::engine::kernels::simd::SimdLevel::Avx2Fma => unsafe { avx2(arg) },
                $crate::engine::kernels::simd::SimdLevel::Portable => $body::<false>(arg),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = level;
            $body::<false>(arg)
        }
    }};
}
pub(crate) use run_at_level;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_by_width() {
        for level in SimdLevel::ALL {
            assert_eq!(SimdLevel::parse(level.name()), Some(level));
        }
        assert_eq!(SimdLevel::parse(" AVX512 "), Some(SimdLevel::Avx512));
        assert_eq!(SimdLevel::parse("sse"), None);
        assert!(SimdLevel::Portable < SimdLevel::Avx2Fma && SimdLevel::Avx2Fma < SimdLevel::Avx512);
        assert!(SimdLevel::Portable.supported());
        let levels = SimdLevel::supported_levels();
        assert_eq!(levels.last(), Some(&SimdLevel::detected()));
        assert!(levels.contains(&active()));
    }
}
