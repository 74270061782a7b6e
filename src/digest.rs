//! The digest that ties a binary to the declaration files it was built from. `build.rs` embeds it
//! (through `#[path]`, so both compute it with this one function); `cargo xtask package` compares it
//! with the files it puts in a package, and refuses a binary built from other declarations.

use sha2::{Digest, Sha256};

/// `sha256` over each file's `sha256(path) ‖ sha256(content)`, in bytewise path order (the shape of
/// the daemon's package checksum, daemon-protocol.md §8.2), as 64 lower-case hex digits.
pub fn declaration_digest(files: &[(String, Vec<u8>)]) -> String {
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut all = Sha256::new();
    for (path, content) in sorted {
        all.update(Sha256::digest(path.as_bytes()));
        all.update(Sha256::digest(content));
    }
    all.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
