//! Cargo's build script (`build = "scripts/build.rs"`): what `toylens --version` says besides the
//! version, namely the git commit the binary was built from and, with the `cuda` feature, the
//! CUDA toolkit's version.

use std::process::Command;

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    // A package built from a source tarball has no .git: its commit is what the packager says.
    let commit = std::env::var("TOYLENS_COMMIT")
        .ok()
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TOYLENS_COMMIT={commit}");
    let mut features = Vec::new();
    if std::env::var_os("CARGO_FEATURE_GUI").is_some() {
        features.push("gui".to_string());
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        let cuda = output("nvcc", &["--version"])
            .and_then(|v| {
                v.lines()
                    .find_map(|l| l.split("release ").nth(1))
                    .map(|r| r.split(',').next().unwrap_or(r).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        features.push(format!("cuda (CUDA {cuda})"));
    }
    if features.is_empty() {
        features.push("none (the command line only)".into());
    }
    println!("cargo:rustc-env=TOYLENS_FEATURES={}", features.join(", "));
    println!("cargo:rerun-if-env-changed=TOYLENS_COMMIT");
    println!("cargo:rerun-if-changed=scripts/build.rs");
    // A new commit or a checkout changes HEAD or the branch it points to (not the index: the
    // crate is not rebuilt for every `git add`).
    // (Only paths that exist: cargo runs the script again every build for a missing one.)
    for path in [".git/HEAD", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(head) = std::fs::read_to_string(".git/HEAD")
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
        && std::path::Path::new(".git").join(&head).exists()
    {
        println!("cargo:rerun-if-changed=.git/{head}");
    }
}
