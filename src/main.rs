//! The `convlens` binary: parses the command line and reports any error as one message
//! with a non-zero exit status.

use clap::Parser;
use convlens::cli::{self, Cli, Command};

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
    convlens::engine::device::retain_freed_host_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Info(args)) => cli::info(&args),
        Some(Command::Export(args)) => cli::export(&args),
        Some(Command::Stats(args)) => cli::stats(&args),
        Some(Command::Annotations(args)) => cli::annotations::run(&args),
        Some(Command::View(args)) => cli::view(&args),
        Some(Command::Bench(args)) => cli::bench(&args),
        // No command: `convlens view` with every default clap gives it.
        None => match Cli::parse_from(["convlens", "view"]).command {
            Some(Command::View(args)) => cli::view(&args),
            _ => Ok(()),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", convlens::error_line::error_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`convlens info | head`) would panic;
/// with the default action the process ends quietly, like other command-line tools.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // action for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
