//! The crate's example plugin (`examples/echo_trigger.rs`), built by `cargo test`, run as the daemon
//! runs a plugin: a child process over stdio pipes with `INSTALL_METHOD=local`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    reason = "tests, benchmarks and examples fail loudly"
)]

use std::path::PathBuf;

use dify_plugin::host::{PluginProcess, StorageMode, trigger};
use serde_json::json;

fn example_binary() -> PathBuf {
    // This test runs from target/<profile>/deps/; cargo puts examples in target/<profile>/examples/.
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_owned();
    let path = deps.parent().unwrap().join("examples/echo_trigger");
    assert!(path.is_file(), "{} is missing: cargo test builds examples", path.display());
    path
}

#[tokio::test]
async fn the_example_plugin_serves_dispatch_and_invoke_over_stdio() {
    let plugin =
        PluginProcess::spawn(tokio::process::Command::new(example_binary()), StorageMode::Denied).await.unwrap();
    let raw = b"POST /hook?x=1 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"hello\":\"world\"}";
    let subscription = trigger::subscription("https://dify.test/triggers/plugin/x", json!({}));
    let dispatched = plugin.call(trigger::dispatch("echo", raw, &subscription)).await.unwrap().unwrap();
    assert_eq!(dispatched["events"], json!(["ping"]));
    assert_eq!(
        hex::decode(dispatched["response"].as_str().unwrap()).unwrap(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    );
    let ping = json!({"method": "POST", "path": "/hook?x=1", "body": "{\"hello\":\"world\"}"});
    assert_eq!(dispatched["payload"], ping);
    let invoke =
        |parameters: serde_json::Value| trigger::invoke("echo", "ping", raw, &ping, &parameters, &subscription);
    let invoked = plugin.call(invoke(json!({}))).await.unwrap().unwrap();
    assert_eq!(invoked, json!({"variables": ping, "cancelled": false}));
    // A node that keeps only GET requests lets this POST go.
    let filtered = plugin.call(invoke(json!({"method": "GET"}))).await.unwrap().unwrap();
    assert_eq!(filtered, json!({"variables": {}, "cancelled": true}));
    // A subscription with a token: a request without it is refused and fires nothing.
    let guarded = trigger::subscription("https://dify.test/triggers/plugin/y", json!({"token": "t0k"}));
    let refused = plugin.call(trigger::dispatch("echo", raw, &guarded)).await.unwrap().unwrap();
    assert_eq!((refused["events"].clone(), refused["payload"].clone()), (json!([]), json!({})));
    assert!(hex::decode(refused["response"].as_str().unwrap()).unwrap().starts_with(b"HTTP/1.1 401 "));
    let with_token = b"POST /hook HTTP/1.1\r\nX-Echo-Token: t0k\r\n\r\n";
    let accepted = plugin.call(trigger::dispatch("echo", with_token, &guarded)).await.unwrap().unwrap();
    assert_eq!(accepted["events"], json!(["ping"]));
    // Unknown names and undeclared actions are answered the way the daemon and Dify expect.
    let other = plugin.call(trigger::dispatch("github", raw, &subscription)).await.unwrap().unwrap_err();
    assert_eq!((other.error_type.as_str(), other.message.as_str()), ("ValueError", "Provider `github` not found"));
    let refused = plugin.call(json!({"action": "subscribe_trigger", "type": "trigger"})).await.unwrap().unwrap_err();
    assert_eq!(refused.error_type, "NotImplementedError");
    let broken =
        plugin.call(json!({"action": "dispatch_trigger_event", "provider": "echo"})).await.unwrap().unwrap_err();
    assert_eq!(broken.error_type, "TriggerDispatchError");
    assert!(plugin.heartbeats_seen() >= 1);
    assert!(plugin.close().await.unwrap().success(), "the example exits 0 at the end of its input");
}

/// The README shows the example's code (and compiles it as a doctest): the two must not drift.
#[test]
fn the_readme_shows_the_example_as_it_is() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/examples/echo_trigger.rs")).unwrap();
    let block = readme.split("```rust,no_run\n").nth(1).expect("the README has the example block");
    let block = block.split("```").next().unwrap();
    // The example file adds only its header comment and lint attributes before the code.
    let code = &example[example.find("use std::sync::Arc;").expect("the example's first line of code")..];
    assert_eq!(block, code, "README.md's example differs from examples/echo_trigger.rs");
    let example = std::fs::read_to_string(format!("{root}/examples/duck_tools.rs")).unwrap();
    let block = readme.split("```rust,no_run\n").nth(2).expect("the README has the tools + endpoint block");
    let block = block.split("```").next().unwrap();
    let code = &example[example.find("use std::sync::Arc;").unwrap()..];
    assert_eq!(block, code, "README.md's example differs from examples/duck_tools.rs");
}

/// The README's walkthrough shows the files of `walkthrough/hello-tool` (a workspace member, so
/// `cargo build --workspace` compiles it, and the conformance suite registers and installs it) as
/// they are.
#[test]
fn the_readme_walkthrough_is_the_walkthrough_crate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = readme.split("## From `cargo new`").nth(1).expect("the README has the walkthrough");
    let section = section.split("\n## ").next().unwrap();
    let blocks = |fence: &str| -> Vec<String> {
        section.split(fence).skip(1).map(|b| b.split("```").next().unwrap().to_owned()).collect()
    };
    let file = |name: &str| std::fs::read_to_string(format!("{root}/walkthrough/hello-tool/{name}")).unwrap();
    assert_eq!(blocks("```yaml\n"), [file("manifest.yaml"), file("provider/hello.yaml"), file("tools/greet.yaml")]);
    assert_eq!(blocks("```rs\n"), [file("build.rs"), file("src/main.rs")]);
    let toml = &blocks("```toml\n")[0];
    for dependency in [
        "tracing-subscriber = \"0.3\"",
        "tokio = { version = \"1\", features = [\"macros\", \"rt\"] }",
        "features = [\"build\"]",
    ] {
        assert!(toml.contains(dependency) && file("Cargo.toml").contains(dependency), "{dependency}");
    }
}
