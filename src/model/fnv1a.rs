// Shared by the crate (`model::onnx`) and `build.rs` (which fingerprints the embedded default
// model once, at build time), so both hash alike; kept free of inner attributes for `include!`.

/// FNV-1a, 64 bit, of `bytes`: each byte XORed in, then multiplied by the FNV prime; one byte
/// after another (about four cycles a byte), so it cannot be split across cores.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
