//! A caught panic's message: the engine turns a backend's panic inside a node into an error
//! naming the node, and image decoding turns a decoder's panic into an error naming the file
//! ([`crate::decode_guard`]); both read the payload here.

/// The message a panic carried (`panic!` with a string or a formatted one), else `fallback`.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>, fallback: &str) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| fallback.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_string_and_str_payloads() {
        let formatted = std::panic::catch_unwind(|| panic!("node {} failed", 3)).unwrap_err();
        assert_eq!(panic_message(&formatted, "?"), "node 3 failed");
        let literal = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&literal, "?"), "plain");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&other, "no text"), "no text");
    }
}
