//! Where things are: the workspace, the plugin's package files, the built artifacts, the tools
//! xtask installs for itself.

use std::path::{Path, PathBuf};

/// The workspace root: xtask's manifest directory's parent.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."))
}

/// The Dify plugin directory, the package's files: the workspace root.
pub(crate) fn plugin_dir() -> PathBuf {
    workspace_root()
}

/// Where built artifacts go: `$DIST_DIR`, or `dist/` in the workspace.
pub(crate) fn dist_dir() -> PathBuf {
    std::env::var_os("DIST_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("dist"))
}

/// The tools xtask installs for itself (maturin's venv): `xtask-tools/` in the target directory.
pub(crate) fn tools_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    target.join("xtask-tools")
}

/// The cache of what pip downloads for the loopback package index.
pub(crate) fn pip_cache() -> PathBuf {
    workspace_root().join("target/xtask-tools/pip-cache")
}
