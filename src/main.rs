use std::process::ExitCode;

/// musl's allocator is slow for many small allocations (a webhook makes a few dozen); the static
/// musl builds we ship use mimalloc instead. glibc builds keep glibc's, which is as fast here.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    openai_trigger::cli::main()
}
