// Loads manifest.yaml and every file it lists, checks them by the daemon's rules (all problems at
// once, each naming file, field and rule) and embeds them for include_declaration!.
fn main() {
    if let Err(problems) = dify_plugin::build::embed(".") {
        panic!("{problems}");
    }
}
