//! Every WGSL file in `shaders/` parses and validates with naga (the compiler wgpu itself
//! uses), and is the exact source the renderer embeds.

use std::path::PathBuf;

use wgpu::naga;

#[test]
fn every_shader_validates_with_naga() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut seen = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string(&source)));
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        );
        validator
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name} does not validate:\n{}", e.emit_to_string(&source)));
        for entry_point in ["vs_main", "fs_main"] {
            assert!(
                module.entry_points.iter().any(|ep| ep.name == entry_point),
                "{name} lacks {entry_point}"
            );
        }
        let embedded = convlens::render::SHADERS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not listed in convlens::render::SHADERS"));
        assert_eq!(embedded.1, source, "{name}: embedded source is stale");
        seen.push(name);
    }
    assert_eq!(
        seen.len(),
        convlens::render::SHADERS.len(),
        "shaders seen: {seen:?}"
    );
}
