use std::process::ExitCode;

/// A webhook makes a few dozen small allocations: musl's allocator made the static builds we ship
/// four times slower, and glibc's costs about a fifth more CPU per webhook than mimalloc (22 against
/// 27 µs per dispatch+invoke pair at 64 in flight, `cargo xtask bench --cpu-only`), so every build
/// uses mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    openai_trigger::cli::main()
}
