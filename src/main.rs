//! The `convlens` binary: parses the command line and reports any error as one message
//! with a non-zero exit status.

use convlens::cli::{self, Cli, Command};

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
    convlens::engine::device::retain_freed_host_memory();
    // SAFETY: first thing in main, before any other thread exists.
    unsafe { convlens::gpu_instance::quiet_vulkan_device_select() };
    let cli = Cli::parse_with_default();
    if let Some(why) = convlens::engine::kernels::simd::refused_request() {
        eprintln!("warning: {why}");
    }
    let result = match cli.command {
        Command::Info(args) => cli::info(&args),
        Command::Export(args) => cli::export(&args),
        Command::Stats(args) => cli::stats(&args),
        Command::Featvis(args) => cli::featvis_command(&args),
        Command::Scan(args) => cli::scan_command(&args),
        Command::Annotations(args) => cli::annotations::run(&args),
        Command::View(args) => cli::view(&args),
        Command::Bench(args) => cli::bench(&args),
        Command::Cameras => cli::cameras(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
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
