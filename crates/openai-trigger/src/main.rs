use std::process::ExitCode;

fn main() -> ExitCode {
    openai_trigger::cli::main()
}
