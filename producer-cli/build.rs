// Records the commit this binary is built from, for `--version`: `ENVSHARE_COMMIT` is
// `<12-digit hash> <commit date>` from git, else the `ENVSHARE_BUILD_COMMIT` environment
// variable (a build without the repository, such as the Docker image's), else `unknown`.
// `worker/build.rs` includes this file (plain comments: an included file cannot have inner docs).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=ENVSHARE_BUILD_COMMIT");
    let commit = from_git()
        .or_else(|| {
            std::env::var("ENVSHARE_BUILD_COMMIT")
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ENVSHARE_COMMIT={commit}");
}

/// `<hash> <date>` of HEAD, and the files whose change means a new HEAD (so a commit or a
/// checkout rebuilds the version text); `None` outside a git checkout or without git.
fn from_git() -> Option<String> {
    let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
    let date = git(&["log", "-1", "--format=%cs", "HEAD"])?;
    // HEAD names the branch; the branch's ref (loose or packed) names the commit. `--git-path`
    // finds them in a linked worktree too.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(reference);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            // A missing file would make cargo rerun this script on every build.
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    Some(format!("{hash} {date}"))
}

/// The trimmed stdout of a successful `git ARGS` run in this crate's directory.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
