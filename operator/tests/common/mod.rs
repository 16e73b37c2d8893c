//! What the tool-driven tests share: the repository root and the external tools they run
//! (lua5.1, promtool, helm), found the way CI installs them.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `name` from the environment variable `env`, PATH, `~/.cache/flashlayer/bin/` or one of its
/// subdirectories (where `.ci/run` and `e2e/cluster build` put tools). Panics with `install` (how
/// to get it) when it is nowhere: a test that needs a tool must not pass without it.
pub fn tool(name: &str, env: &str, install: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(p) = std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()) {
        return p;
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cache = PathBuf::from(home).join(".cache/flashlayer/bin");
        if cache.join(name).is_file() {
            return cache.join(name);
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
            .map(|dir| {
                dir.flatten()
                    .map(|e| e.path().join(name))
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        if let Some(p) = found.pop() {
            return p;
        }
    }
    panic!("{name} not found (set {env}, or put it on PATH): {install}");
}
