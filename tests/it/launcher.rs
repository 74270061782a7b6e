//! The binary's side of `main.py`'s launcher: the temporary copy made when the package directory is
//! mounted noexec removes itself once running.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::support::EXE;

/// The launcher's temporary copy (noexec fallback) is removed by the binary it started, and the
/// variable that names it cannot be used to delete any other file.
#[test]
fn binary_removes_only_its_own_launcher_copy() {
    let scratch = std::env::temp_dir().join(format!("openai-trigger-it-unlink-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).unwrap();
    let copy = scratch.join("dify-plugin-copy");
    fs::copy(EXE, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o700)).unwrap();
    let status = Command::new(&copy).arg("--version").env("OPENAI_TRIGGER_UNLINK", &copy).status().unwrap();
    assert!(status.success());
    assert!(!copy.exists(), "the running copy should have removed itself");

    let bystander = scratch.join("precious.txt");
    fs::write(&bystander, "keep me").unwrap();
    let status = Command::new(EXE).arg("--version").env("OPENAI_TRIGGER_UNLINK", &bystander).status().unwrap();
    assert!(status.success());
    assert_eq!(fs::read_to_string(&bystander).unwrap(), "keep me", "a file that is not the binary must survive");
    fs::remove_dir_all(&scratch).unwrap();
}
