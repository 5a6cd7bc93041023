//! The viewer end to end in a real window: filters annotated with the mouse (click = good,
//! double-click = bad, shift+click = clear) through X11 input events, the process killed
//! with SIGKILL, and the marks found again after a restart. Needs an X display and
//! `xdotool`, so it is ignored by default; CI runs it as
//! `xvfb-run -a cargo test --test it -- --ignored viewer_window::`.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use convlens::annotations::{Annotations, Mark};
use convlens::cli::ModelArgs;
use convlens::ui::scene::selected_grid;
use convlens::ui::state::ViewState;

const WINDOW: [u32; 2] = [1000, 700];
const STEM: &str = "/_conv_stem/Conv";

fn xdotool(args: &[&str]) -> String {
    let out = Command::new("xdotool")
        .args(args)
        .output()
        .expect("xdotool is installed (apt install xdotool)");
    assert!(
        out.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until `check` holds on the annotation file (or panics after `limit`).
fn wait_for(path: &Path, limit: Duration, check: impl Fn(&Annotations) -> bool) -> Annotations {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(a) = Annotations::from_json(&text, "marks")
            && check(&a)
        {
            return a;
        }
        assert!(
            start.elapsed() < limit,
            "timed out; file now: {:?}",
            std::fs::read_to_string(path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs an X display and xdotool; run under xvfb-run"]
fn annotations_made_with_the_mouse_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("marks.json");
    let size = format!("{}x{}", WINDOW[0], WINDOW[1]);
    let mut viewer = Command::new(env!("CARGO_BIN_EXE_convlens"))
        .args([
            "view",
            "--device",
            "cpu",
            "--window-size",
            &size,
            "--annotations",
        ])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The window appears once the first forward pass has run.
    let window = xdotool(&["search", "--sync", "--onlyvisible", "--name", "^ConvLens"]);
    let window = window.lines().next().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1500)); // first frames (software rendering)

    // Where filter tiles 1–3 of the first conv layer are, from the viewer's own pure layout.
    let model = ModelArgs::default().load().unwrap();
    let device = convlens::engine::device::select(convlens::engine::DeviceChoice::Cpu);
    let session = convlens::app::Session::new(model, &device);
    let state = ViewState::new(0, [WINDOW[0] as f32, WINDOW[1] as f32]);
    let grid = selected_grid(&session.vm, &state).unwrap();
    let centre = |k: usize| {
        let [x, y] = grid.tile_rect(k, 0.0).center();
        [format!("{}", x as i32), format!("{}", y as i32)]
    };
    let click_at = |k: usize, extra: &[&str]| {
        let [x, y] = centre(k);
        let mut args = vec!["mousemove", "--window", &window, &x, &y, "click"];
        args.extend_from_slice(extra);
        args.push("1");
        xdotool(&args);
    };

    click_at(0, &[]); // filter 1: good
    click_at(1, &["--repeat", "2", "--delay", "60"]); // filter 2: double-click = bad
    click_at(2, &[]); // filter 3: good …
    wait_for(&file, Duration::from_secs(30), |a| {
        a.mark(STEM, 2) == Some(Mark::Good) && a.mark(STEM, 1) == Some(Mark::Bad)
    });
    std::thread::sleep(Duration::from_millis(600)); // not a double-click
    // Without a window manager nothing gives the window keyboard focus; modifiers need it.
    xdotool(&["windowfocus", "--sync", &window]);
    xdotool(&["keydown", "shift"]);
    click_at(2, &[]); // … then shift+click clears it
    xdotool(&["keyup", "shift"]);
    let saved = wait_for(&file, Duration::from_secs(30), |a| {
        a.mark(STEM, 2).is_none()
    });

    viewer.kill().unwrap(); // SIGKILL: no chance to save anything on exit
    viewer.wait().unwrap();

    assert_eq!(saved.mark(STEM, 0), Some(Mark::Good));
    assert_eq!(saved.mark(STEM, 1), Some(Mark::Bad));
    assert_eq!(saved.counts(STEM), (1, 1));

    // Restart: the viewer finds the marks (checked through `annotations export`, which
    // opens the same file the viewer does).
    let csv = dir.path().join("marks.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_convlens"))
        .args(["annotations", "export", "--annotations"])
        .arg(&file)
        .arg("--out")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        format!("layer,filter,mark\n{STEM},1,good\n{STEM},2,bad\n")
    );
}
