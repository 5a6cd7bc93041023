//! Errors as one line for people (the binary's `error:` line, the viewer's notice line): the
//! message and its causes joined by ": ", leaving out a cause the text already ends with — a
//! library error that names its source in its own message (`cannot read F: <io error>`) and
//! also returns it as `source()` would otherwise print it twice.

/// `e` and its causes as one line, each cause once.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {path}: {source}")]
    struct ReadError {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(ReadError {
            path: "a.png".into(),
            source: io,
        })
        .context("loading the input");
        assert_eq!(
            format!("{e:#}"),
            "loading the input: cannot read a.png: no such file: no such file"
        );
        assert_eq!(
            error_line(&e),
            "loading the input: cannot read a.png: no such file"
        );
    }

    #[test]
    fn distinct_causes_are_all_kept() {
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_line(&e), "outer: middle: inner");
    }
}
