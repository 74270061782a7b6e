//! The side of `main.py`'s launcher that runs in the binary. When the plugin directory is mounted
//! `noexec`, `main.py` runs a temporary copy of this binary and names it in [`COPY_VAR`]; it is
//! removed as soon as the copy runs (Linux keeps the running image).

/// Set by `main.py` to the temporary copy's path; children must not inherit it.
pub(crate) const COPY_VAR: &str = "OPENAI_TRIGGER_UNLINK";

/// Removes the launcher's temporary copy. Only a path that is this very executable is removed, so
/// the variable can never be used to delete anything else.
pub(crate) fn remove_copy() {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = std::env::var_os(COPY_VAR) else { return };
    let (Ok(copy), Ok(running)) = (std::fs::metadata(&path), std::fs::metadata("/proc/self/exe")) else { return };
    if copy.dev() == running.dev() && copy.ino() == running.ino() {
        let _ = std::fs::remove_file(&path);
    }
}
