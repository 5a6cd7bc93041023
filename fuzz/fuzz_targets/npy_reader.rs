//! Arbitrary bytes → `convlens::npy::from_bytes` (the `.npy` reader behind `--input x.npy`
//! and `view --data`'s raw arrays). Whatever it accepts must round-trip: written back with
//! `npy::to_bytes`, it reads as the same shape and values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = convlens::npy::from_bytes(data) {
        let elements: usize = array.shape.iter().product();
        assert_eq!(elements, array.data.len());
        let again = convlens::npy::from_bytes(&convlens::npy::to_bytes(&array.shape, &array.data))
            .expect("what the reader accepts, the writer writes readably");
        assert_eq!(again.shape, array.shape);
        assert!(
            again
                .data
                .iter()
                .zip(&array.data)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
});
