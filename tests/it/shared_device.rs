//! One wgpu device for compute and rendering: the renderer's `GpuContext` is registered with
//! burn (`GpuContext::burn_device`), a model runs on it and matches the flex CPU backend, and
//! the same context then renders a frame. Runs on Mesa's software Vulkan in CI.

use crate::common;

use std::sync::Arc;

use common::{fixture, formula_input, max_abs, scaled_error};
use convlens::engine::{Capture, Engine, NamedInput};
use convlens::model::{ImportOptions, load_onnx_file};
use convlens::render::{GpuContext, OffscreenTarget, Renderer, Scene, ShapeInstance};

#[test]
fn burn_runs_on_the_renderers_device() {
    let ctx = GpuContext::headless().expect("a wgpu adapter (mesa-vulkan-drivers in CI)");
    let shared = ctx
        .burn_device()
        .expect("burn accepts the renderer's device");
    let graph = Arc::new(
        load_onnx_file(
            &fixture("mixed/tiny_alexnet.onnx"),
            &ImportOptions::default(),
        )
        .unwrap(),
    );
    let input = &graph.inputs[0];
    let named = NamedInput {
        name: input.name.clone(),
        shape: input.shape.clone(),
        data: formula_input(input.shape.iter().product()),
    };
    let run = |device| {
        Engine::new(Arc::clone(&graph), device)
            .forward_inputs(std::slice::from_ref(&named), &Capture::All)
            .unwrap()
    };
    let on_gpu = run(shared);
    let on_cpu = run(burn::tensor::Device::flex());
    let mut worst = 0.0f32;
    for node in &graph.nodes {
        let name = &node.outputs[0];
        let (a, e) = (on_gpu.read(name).unwrap(), on_cpu.read(name).unwrap());
        assert_eq!(a.shape, e.shape, "{name}");
        worst = worst.max(scaled_error(&a.data, &e.data, max_abs(&e.data)));
    }
    assert!(
        worst <= 1e-4,
        "shared-device forward differs from flex: {worst:.2e}"
    );

    // The renderer keeps working on the device burn now also uses.
    let mut renderer = Renderer::new(&ctx, OffscreenTarget::DEFAULT_FORMAT);
    let scene = Scene {
        clear: [0.0, 0.0, 0.0, 1.0],
        shapes: vec![ShapeInstance::fill_rect(
            [0.0, 0.0, 8.0, 8.0],
            [1.0, 0.0, 0.0, 1.0],
        )],
        ..Scene::default()
    };
    let image = renderer.render_to_image(&ctx, &scene, 16, 16).unwrap();
    assert_eq!(image.get_pixel(2, 2).0, [255, 0, 0, 255]);
    assert_eq!(image.get_pixel(12, 12).0, [0, 0, 0, 255]);
}

#[test]
fn a_lost_gpu_device_falls_back_to_the_cpu() {
    let ctx = GpuContext::headless().expect("a wgpu adapter (mesa-vulkan-drivers in CI)");
    let shared = ctx
        .burn_device()
        .expect("burn accepts the renderer's device");
    let load = || {
        convlens::cli::ModelArgs {
            model: Some(fixture("mixed/tiny_alexnet.onnx")),
            ..Default::default()
        }
        .load()
        .unwrap()
    };
    let gpu = convlens::engine::ComputeDevice {
        device: shared,
        description: "gpu (shared)".into(),
        is_gpu: true,
        warning: None,
    };
    let mut session = convlens::app::Session::new(load(), &gpu);
    session.run_file(None).unwrap();
    assert!(session.on_gpu);
    let before = session.vm.probabilities.clone();

    // The device goes away (as after a driver reset): the next pass fails on the GPU, runs
    // again on the CPU, and the session says so.
    ctx.device.destroy();
    session.run_file(None).expect("the CPU takes over");
    assert!(!session.on_gpu);
    assert!(
        session.vm.device.starts_with("cpu"),
        "{}",
        session.vm.device
    );
    let notice = session.vm.notice().unwrap_or_default().to_string();
    assert!(notice.contains("The GPU failed"), "{notice}");
    let after = &session.vm.probabilities;
    let err = scaled_error(after, &before, max_abs(&before));
    assert!(err < 1e-4, "CPU result differs from the GPU's: {err:.2e}");
    // And it keeps working.
    session
        .ensure_gradients(0, convlens::format::Method::Guided)
        .unwrap();
}
