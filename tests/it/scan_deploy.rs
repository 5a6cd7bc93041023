//! The shipped cluster recipes run as shipped: `deploy/slurm/scan.sbatch` on a real Slurm
//! (the one-node cluster `.ci/slurm-up` starts), and the Kubernetes Indexed Job's container
//! command run locally once per index, each merged result equal to a single-process scan.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{fixture, output_text, run_convlens};
use crate::scan::{assert_same_scan, scan};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Whether Slurm's client answers. CI sets `CONVLENS_REQUIRE_SLURM=1` after starting the
/// one-node cluster, so there a missing Slurm fails instead of skipping.
fn slurm_available() -> bool {
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !up && std::env::var_os("CONVLENS_REQUIRE_SLURM").is_some() {
        panic!("CONVLENS_REQUIRE_SLURM is set but Slurm is not up (run .ci/slurm-up)");
    }
    up
}

#[test]
fn slurm_array_scan_merges_to_the_single_process_scan() {
    if !slurm_available() {
        eprintln!("skipped: no Slurm here (CI starts one with .ci/slurm-up)");
        return;
    }
    let model = fixture("mixed/tiny_resnet.onnx");
    let images = fixture("scan/images");
    let out = tempfile::tempdir().expect("tempdir");
    let submit = Command::new("bash")
        .arg(repo("deploy/slurm/scan.sbatch"))
        .args(["--device", "cpu", "--crop-size", "12"])
        .args([
            "--mean",
            crate::scan::IMAGENET_MEAN,
            "--std",
            crate::scan::IMAGENET_STD,
        ])
        .env("CONVLENS", env!("CARGO_BIN_EXE_convlens"))
        .env("MODEL", &model)
        .env("INPUTS", &images)
        .env("OUT", out.path())
        .env("TASKS", "3")
        .env("SBATCH_EXTRA", "--cpus-per-task=1 --mem=1G --time=10")
        .output()
        .expect("bash runs");
    let text = output_text(&submit);
    assert!(submit.status.success(), "submission failed: {text}");
    let ids: Vec<String> = String::from_utf8_lossy(&submit.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 2, "expected `ARRAY MERGE` job ids: {text}");
    // `sbatch --wait` polls slowly (2, 8, 32 s); squeue answers at once.
    let start = Instant::now();
    while Command::new("squeue")
        .args(["-h", "-j", &format!("{},{}", ids[0], ids[1])])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty())
    {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "Slurm jobs {ids:?} still queued after 5 min"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let logs = std::fs::read_dir(out.path())
        .expect("out")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "out"))
        .map(|p| std::fs::read_to_string(&p).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let result = out.path().join("scan");
    // A cancelled merge (failed task) still ends the queue: check the result itself.
    assert!(
        result.join("scan.json").exists(),
        "no merged scan; job logs:\n{logs}"
    );
    for i in 0..3 {
        assert!(
            out.path()
                .join(format!("shards/shard-000{i}-of-0003"))
                .is_dir(),
            "{logs}"
        );
    }
    let whole = tempfile::tempdir().expect("tempdir");
    scan("tiny_resnet", &images, whole.path(), &["--crop-size", "12"]);
    assert_same_scan(whole.path(), &result);
}

/// The `args` of the first container of a Job in the manifest, by the Job's name.
fn container_args(docs: &[yaml_rust2::Yaml], job: &str) -> (yaml_rust2::Yaml, Vec<String>) {
    let doc = (docs.iter())
        .find(|d| d["metadata"]["name"].as_str() == Some(job))
        .unwrap_or_else(|| panic!("no Job {job} in the manifest"));
    assert_eq!(doc["kind"].as_str(), Some("Job"));
    let container = &doc["spec"]["template"]["spec"]["containers"][0];
    let command: Vec<&str> = (container["command"].as_vec().expect("command").iter())
        .map(|c| c.as_str().expect("string"))
        .collect();
    assert_eq!(command, ["convlens"]);
    let args = (container["args"].as_vec().expect("args").iter())
        .map(|a| a.as_str().expect("every arg is a string").to_string())
        .collect();
    (doc.clone(), args)
}

#[test]
fn kubernetes_indexed_job_runs_per_index_and_merges() {
    let text = std::fs::read_to_string(repo("deploy/k8s/scan-job.yaml")).expect("manifest");
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("valid YAML");
    let (job, args) = container_args(&docs, "convlens-scan");
    assert_eq!(job["spec"]["completionMode"].as_str(), Some("Indexed"));
    let completions = job["spec"]["completions"].as_i64().expect("completions");
    let shards_at = args.iter().position(|a| a == "--shards").expect("--shards");
    assert_eq!(
        args[shards_at + 1],
        completions.to_string(),
        "--shards must equal completions"
    );
    let (_, merge_args) = container_args(&docs, "convlens-scan-merge");

    // The pod's volumes, mapped to local folders.
    let root = tempfile::tempdir().expect("tempdir");
    let model = fixture("mixed/tiny_resnet.onnx");
    let images = fixture("scan/images");
    let local = |a: &str| -> String {
        if a == "/models/model.onnx" {
            model.display().to_string()
        } else if a == "/data/images" {
            images.display().to_string()
        } else if let Some(rest) = a.strip_prefix("/scan/") {
            root.path().join(rest).display().to_string()
        } else {
            a.to_string()
        }
    };
    let pinned = ["--device", "cpu", "--crop-size", "12"];
    let data = tempfile::tempdir().expect("tempdir");
    for index in 0..completions {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_convlens"));
        cmd.args(args.iter().map(|a| local(a)))
            .args(pinned)
            .args([
                "--mean",
                crate::scan::IMAGENET_MEAN,
                "--std",
                crate::scan::IMAGENET_STD,
            ])
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("CONVLENS_DATA_DIR", data.path());
        let out = cmd.output().expect("runs");
        assert!(out.status.success(), "index {index}: {}", output_text(&out));
    }
    let merge: Vec<String> = merge_args.iter().map(|a| local(a)).collect();
    let merge: Vec<&str> = merge.iter().map(String::as_str).collect();
    let out = run_convlens(data.path(), &merge);
    assert!(out.status.success(), "merge: {}", output_text(&out));
    let whole = tempfile::tempdir().expect("tempdir");
    scan("tiny_resnet", &images, whole.path(), &["--crop-size", "12"]);
    assert_same_scan(whole.path(), &root.path().join("result"));
}
