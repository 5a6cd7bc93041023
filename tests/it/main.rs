//! The integration tests, in one binary so the crate links once for all of them: as 23
//! binaries, each linking burn and wgpu, a library edit took 18.3 s to rebuild them, now
//! 5.3 s (2-core EPYC, warm dependencies). One module per concern, as the files were; `common` and `attribution_support` are their shared helpers.
//! `tests/fuzz_regressions.rs` stays its own binary: it installs a capped global allocator.
//!
//! Run one concern with a filter: `cargo test --test it datadir::`. The windowed tests are
//! ignored by default: `xvfb-run -a cargo test --test it -- --ignored render_window:: viewer_window::`.

mod attribution_support;
mod common;

mod annotations;
mod arch_levels;
mod attribution;
mod attribution_ops;
mod attribution_rules;
mod bad_inputs;
mod batch;
mod bench_cli;
mod cli;
mod conformance_models;
mod conformance_nodes;
mod datadir;
mod default_model;
mod featvis;
mod gradcam;
mod inputs;
mod occlusion;
mod render_atlas;
mod render_golden;
mod render_shaders;
mod render_window;
mod scan;
mod scan_deploy;
mod scan_view;
mod shared_device;
mod summary_passes;
mod view_golden;
mod viewer_compute;
mod viewer_window;
