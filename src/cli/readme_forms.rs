//! Every command form README's "Commands" block documents must parse: the block is read at
//! compile time, each documented line is expanded into its shortest and its fullest form
//! (optional `[…]` groups left out or all put in, placeholders replaced by sample values),
//! and each form goes through the binary's own parser. README and the parser cannot drift
//! apart unnoticed.

use super::{Cli, Command};

const README: &str = include_str!("../../README.md");

/// The `convlens …` command lines of README's first ```sh block under "## Commands", each
/// joined with its indented continuation lines, comments removed.
fn documented_commands() -> Vec<String> {
    let section = README
        .split("\n## Commands")
        .nth(1)
        .expect("README has a Commands section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the Commands section opens with a ```sh block");
    let mut commands: Vec<String> = Vec::new();
    for line in block.lines() {
        let code = line.split("  #").next().unwrap_or("").trim_end();
        if code.starts_with("convlens") {
            commands.push(code.to_string());
        } else if code.starts_with(' ') && !code.trim().is_empty() {
            let last = commands
                .last_mut()
                .expect("a continuation follows a command");
            last.push(' ');
            last.push_str(code.trim());
        }
    }
    commands
}

/// A sample value for a documented placeholder (`MODEL.onnx`, `IMG|DIR`, `N[,N..]`, …):
/// the first alternative of `a|b|c`, with each upper-case placeholder made concrete.
fn sample(token: &str) -> String {
    let first = token.split('|').next().unwrap_or(token);
    match first {
        "MODEL.onnx" => "model.onnx".into(),
        "IMG" => "photo.jpg".into(),
        "DIR" => "folder".into(),
        "N" | "N[,N..]" => "1".into(),
        "NAME" | "NAME,NAME" | "NAMES" => "conv1".into(),
        "OUT.png" => "out.png".into(),
        "FILE.json" => "marks.json".into(),
        "FILE.csv" => "out.csv".into(),
        "WxH" => "800x600".into(),
        "HxW" => "128x128".into(),
        "F" => "0.5".into(),
        "PX" => "16".into(),
        "..." => "forward".into(),
        other => other.to_string(),
    }
}

/// `line`'s tokens with whether each sits inside an optional `[…]` group.
fn tokens_with_optionality(line: &str) -> Vec<(String, bool)> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    for raw in line.split_whitespace() {
        let opens = raw.chars().take_while(|&c| c == '[').count();
        let core = &raw[opens..];
        // Brackets balanced inside the token (`N[,N..]`) belong to the placeholder.
        let closes = core
            .matches(']')
            .count()
            .saturating_sub(core.matches('[').count());
        let core = &core[..core.len() - closes];
        depth += opens;
        out.push((core.to_string(), depth > 0));
        depth = depth.saturating_sub(closes);
    }
    out
}

/// The shortest and the fullest argv of a documented line (program name first).
fn forms(line: &str) -> [Vec<String>; 2] {
    let tokens = tokens_with_optionality(line);
    let argv = |with_optional: bool| -> Vec<String> {
        tokens
            .iter()
            .filter(|(_, optional)| with_optional || !optional)
            .map(|(t, _)| {
                if t.starts_with('-') {
                    t.clone()
                } else {
                    sample(t)
                }
            })
            .collect()
    };
    [argv(false), argv(true)]
}

#[test]
fn readme_lists_every_command() {
    let commands = documented_commands();
    for name in ["view", "info", "export", "stats", "bench", "annotations"] {
        assert!(
            commands.iter().any(|c| c
                .split_whitespace()
                .any(|t| t.trim_matches(['[', ']']) == name)),
            "README's Commands block documents no `{name}` form: {commands:#?}"
        );
    }
}

#[test]
fn every_documented_form_parses() {
    let commands = documented_commands();
    assert!(commands.len() >= 8, "{commands:#?}");
    for line in &commands {
        for argv in forms(line) {
            let parsed = match Cli::try_parse_with_default(&argv) {
                Ok(parsed) => parsed,
                // `convlens --version` / `--help` end parsing by printing, as documented.
                Err(e)
                    if matches!(
                        e.kind(),
                        clap::error::ErrorKind::DisplayVersion
                            | clap::error::ErrorKind::DisplayHelp
                    ) =>
                {
                    continue;
                }
                Err(e) => panic!("README form {argv:?} (from `{line}`) fails:\n{e}"),
            };
            // A form without a subcommand name (`convlens [view] …` with the `[view]` left out)
            // is the viewer.
            if argv
                .get(1)
                .is_some_and(|a| a.starts_with('-') || a.ends_with(".onnx"))
            {
                assert!(
                    matches!(parsed.command, Command::View(_)),
                    "{argv:?} is not the viewer"
                );
            }
        }
    }
}

#[test]
fn the_viewer_is_the_default_command() {
    let view = |args: &[&str]| {
        let argv = std::iter::once("convlens").chain(args.iter().copied());
        match Cli::try_parse_with_default(argv).map(|c| c.command) {
            Ok(Command::View(v)) => v,
            other => panic!("{args:?}: {other:?}"),
        }
    };
    assert_eq!(view(&[]).model.model, None);
    let v = view(&["model.onnx", "--input", "photo.jpg"]);
    assert_eq!(v.model.model.as_deref(), Some("model.onnx".as_ref()));
    assert_eq!(v.input.as_deref(), Some("photo.jpg".as_ref()));
    let v = view(&["--screenshot", "out.png"]);
    assert_eq!(v.screenshot.as_deref(), Some("out.png".as_ref()));
    assert_eq!(
        view(&["--input", "a.png"]).input.as_deref(),
        Some("a.png".as_ref())
    );
    // Named subcommands still win, and top-level help/version stay top-level.
    let info = Cli::try_parse_with_default(["convlens", "info", "m.onnx"]).unwrap();
    assert!(matches!(info.command, Command::Info(_)));
    for flag in ["--version", "--help"] {
        let err = Cli::try_parse_with_default(["convlens", flag]).unwrap_err();
        assert!(matches!(
            err.kind(),
            clap::error::ErrorKind::DisplayVersion | clap::error::ErrorKind::DisplayHelp
        ));
    }
    // An unknown flag is still an error, reported against `view`.
    assert!(Cli::try_parse_with_default(["convlens", "--no-such-flag"]).is_err());
}

#[test]
fn optional_groups_and_placeholders_expand() {
    let [short, full] = forms("convlens [view] [MODEL.onnx] --webcam [N]");
    assert_eq!(short, ["convlens", "--webcam"]);
    assert_eq!(full, ["convlens", "view", "model.onnx", "--webcam", "1"]);
    let [short, full] = forms("convlens annotations set --filter N[,N..] [--mark good|bad]");
    assert_eq!(short, ["convlens", "annotations", "set", "--filter", "1"]);
    assert_eq!(full.last().map(String::as_str), Some("good"));
}
