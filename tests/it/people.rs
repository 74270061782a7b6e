//! What people see, held in golden files (`tests/golden/`): every command's `--help` at 80
//! columns, the demo at 80 columns, `send`'s human and JSON answers, and each error a newcomer
//! meets, with the address, port or variable it is about and the fix (#12). Values that change
//! from run to run (timings, ports, generated ids and secrets) are replaced by placeholders
//! first. `OT_BLESS=1 cargo test -p openai-trigger --test it people` rewrites the files; review
//! the diff before committing it.

use std::net::TcpListener;
use std::path::PathBuf;

use serde_json::Value;

use crate::demo::{Dev, free_port, run, run_with};
use crate::support::*;

const COLUMNS: &str = "80";

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// Compares `actual` with the golden file `name` (or writes it under `OT_BLESS=1`).
fn golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("OT_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err} (OT_BLESS=1 writes it)", path.display()));
    if expected != actual {
        let mut diff = String::new();
        let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
        for i in 0..e.len().max(a.len()) {
            let (left, right) = (e.get(i).copied(), a.get(i).copied());
            if left != right {
                diff.push_str(&format!("line {}:\n  golden: {left:?}\n  actual: {right:?}\n", i + 1));
            }
        }
        panic!("{} differs from what the binary printed (OT_BLESS=1 rewrites it):\n{diff}", path.display());
    }
}

/// Replaces the characters of `class` that follow each `prefix` with `placeholder`.
fn mask(text: &str, prefix: &str, class: impl Fn(char) -> bool, placeholder: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        out.push_str(&rest[..at]);
        let after = &rest[at + prefix.len()..];
        let end = after.find(|c: char| !class(c)).unwrap_or(after.len());
        out.push_str(prefix);
        out.push_str(if end == 0 { "" } else { placeholder });
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn base64ish(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn widest(text: &str) -> usize {
    text.lines().map(|line| line.chars().count()).max().unwrap_or(0)
}

#[test]
fn help_of_every_command_matches_its_golden_file_and_fits_80_columns() {
    use clap::CommandFactory;
    let mut commands: Vec<String> =
        openai_trigger::cli::Cli::command().get_subcommands().map(|c| c.get_name().to_owned()).collect();
    commands.retain(|c| c != "help");
    commands.insert(0, String::new());
    for command in &commands {
        let args: Vec<&str> = if command.is_empty() { vec!["--help"] } else { vec![command.as_str(), "--help"] };
        let output = run_with(&args, &[("COLUMNS", COLUMNS)]);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let help = stdout(&output);
        assert!(widest(&help) <= 80, "{args:?} is {} columns wide:\n{help}", widest(&help));
        assert!(!help.contains("=]"), "{args:?} shows an unset variable as set to empty:\n{help}");
        assert!(help.contains("Example"), "{args:?} has no example:\n{help}");
        let name = if command.is_empty() { "help.txt".to_owned() } else { format!("help-{command}.txt") };
        golden(&name, &help);
    }
    // send's help lists every type it knows.
    let send = stdout(&run_with(&["send", "--help"], &[("COLUMNS", COLUMNS)]));
    for openai_type in openai_trigger::events::known_openai_types() {
        assert!(send.contains(openai_type), "send --help does not list {openai_type}");
    }
}

#[test]
fn demo_fits_80_columns_and_matches_its_golden_file() {
    let output = run_with(&["demo"], &[("COLUMNS", COLUMNS)]);
    let text = stdout(&output);
    assert!(output.status.success(), "demo failed:\n{text}\n{}", stderr(&output));
    assert!(widest(&text) <= 80, "the demo is {} columns wide:\n{text}", widest(&text));
    let text = mask(&text, "ready in ", |c| c.is_ascii_digit() || c == '.', "N.N");
    let text = mask(&text, "sent ", |c| c.is_ascii_digit(), "N");
    golden("demo-80.txt", &text);
    // --wide shows what the narrow table cut.
    let wide = stdout(&run_with(&["demo", "--wide"], &[("COLUMNS", COLUMNS)]));
    assert!(widest(&wide) > 80, "demo --wide cut its lines too");
    assert!(!wide.lines().any(|line| line.ends_with('…')), "demo --wide cut a line:\n{wide}");
}

/// Each case: the arguments, extra environment, and what it is about (for the golden file).
struct Case<'a> {
    args: Vec<String>,
    env: Vec<(&'a str, &'a str)>,
}

fn case<'a>(args: &[&str], env: &[(&'a str, &'a str)]) -> Case<'a> {
    Case { args: args.iter().map(|a| (*a).to_owned()).collect(), env: env.to_vec() }
}

#[test]
fn each_error_names_what_is_wrong_and_the_fix() {
    // A port nothing listens on, and one something does.
    let closed = free_port().to_string();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let closed_url = format!("http://127.0.0.1:{closed}/");
    let cases = [
        case(&["sevre"], &[]),
        case(&["send", "batch_completd", "--secret", SECRET], &[]),
        case(&["send", "Batch.Completed", "--secret", SECRET], &[]),
        case(&["send", "video.completed", "--secret", SECRET], &[]),
        case(&["send", "batch.completed", "--secret", "mysecret"], &[]),
        case(&["send", "batch.completed", "--secret", "whsec_%%%"], &[]),
        case(&["send", "batch.completed", "--secret", SECRET, "--url", &closed_url], &[]),
        case(&["send", "batch.completed", "--secret", SECRET, "--url", &closed_url, "--age", "-600"], &[]),
        case(&["send", "batch.completed", "--secret", SECRET, "--url", "https://dify.example.com/x"], &[]),
        case(&["send", "batch.completed", "--secret", SECRET, "--url", "http://127.0.0.1:65616/"], &[]),
        case(&["send", "batch.completed", "--secret", SECRET, "--url", "http://user:pw@127.0.0.1:1/"], &[]),
        case(&["send", "batch.completed", "--secret", SECRET, "--age", "9223372036854775807"], &[]),
        case(&["send", "batch.completed", "--secret", SECRET, "--webhook-id", "wh 1"], &[]),
        case(&["send", "batch.completed"], &[]),
        case(&["dev", "--secret", SECRET, "--port", &busy_port], &[]),
        case(&["dev", "--secret", "mysecret"], &[]),
        case(&["remote", "--url", "http://127.0.0.1:5003", "--key", "k"], &[]),
        case(&["remote", "--url", "127.0.0.1", "--key", "k"], &[]),
        case(&["serve"], &[("INSTALL_METHOD", "lcoal")]),
    ];
    let mut transcript = String::new();
    for case in &cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let output = run_with(&args, &case.env);
        assert!(!output.status.success(), "{args:?} succeeded");
        let err = stderr(&output);
        assert!(!err.trim().is_empty(), "{args:?} failed without a word");
        assert!(!err.contains("mysecret") && !err.contains(SECRET), "{args:?} echoed the secret: {err}");
        let env: Vec<String> = case.env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        transcript.push_str(&format!("$ {}openai-trigger {}\n{err}\n", env.concat(), args.join(" ")));
    }
    drop(busy);
    // What each must say, beyond the golden file: the address and the fix, and no wild guess.
    assert!(!transcript.contains("\"video.completed\": did you mean"), "{transcript}");
    assert!(transcript.contains(&format!("127.0.0.1:{closed}")) && transcript.contains("openai-trigger dev"));
    assert!(transcript.contains(&format!("127.0.0.1:{busy_port}")) && transcript.contains("--port"));
    assert!(transcript.contains("did you mean batch.completed?"));
    assert!(transcript.contains("--any-type"));
    assert!(transcript.contains("base64"));
    assert!(transcript.contains("INSTALL_METHOD"));
    assert!(transcript.contains("port 65616 is not 1-65535"), "an out-of-range port must not become port 80");
    assert!(!transcript.contains("user:pw@127.0.0.1:1/ ("), "credentials in --url are refused, not used");
    let transcript = transcript.replace(&closed, "CLOSED_PORT").replace(&busy_port, "BUSY_PORT");
    golden("errors.txt", &transcript);
}

#[test]
fn bad_environment_values_are_reported_not_ignored() {
    for (name, value) in [("OPENAI_TRIGGER_LOG", "verbose"), ("OPENAI_TRIGGER_WORKERS", "many")] {
        let output = run_with(&["serve"], &[(name, value)]);
        assert!(output.status.success(), "serve with {name}={value} ends at EOF: {}", stderr(&output));
        let err = stderr(&output);
        assert!(err.contains(name) && err.contains(value), "{name}={value} was ignored silently: {err:?}");
    }
}

#[test]
fn send_answers_in_one_line_or_in_json() {
    let port = free_port();
    let dev = Dev::start(SECRET, port);
    let url = format!("http://127.0.0.1:{port}/");
    let mut transcript = String::new();
    let mut send = |args: &[&str]| {
        let mut all = vec!["send"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &url, "--secret", SECRET]);
        let output = run(&all);
        let out = stdout(&output);
        assert_eq!(out.lines().count(), 1, "{args:?} printed {out:?}");
        transcript.push_str(&format!("$ openai-trigger send {} --url … --secret …\n{out}", args.join(" ")));
        (output.status.success(), out)
    };
    let webhook_id = format!("wh_people_{}", std::process::id());
    assert!(send(&["batch.completed", "--webhook-id", &webhook_id]).0);
    assert!(send(&["batch_completed", "--webhook-id", &webhook_id]).0, "a duplicate is a success for OpenAI");
    assert!(send(&["video.completed", "--any-type"]).0);
    let (ok, stale) = send(&["batch.completed", "--age", "600"]);
    assert!(!ok, "a stale delivery must fail: {stale}");
    let (ok, json) = send(&["batch.completed", "--age", "-600", "--json"]);
    assert!(!ok);
    let answer: Value = serde_json::from_str(json.trim()).unwrap_or_else(|_| panic!("--json printed {json:?}"));
    assert_eq!(answer["status"], 401, "{answer}");
    assert_eq!(answer["response"]["error"], "timestamp_too_new", "the response is JSON, not a string: {answer}");
    dev.wait_for("batch_completed", |v| v["event"] == "batch_completed");
    let transcript = transcript.replace(&webhook_id, "wh_GIVEN");
    let transcript = mask(&transcript, "webhook-id wh_", |c| c.is_ascii_hexdigit(), "FRESH");
    let transcript = mask(&transcript, "\"webhook_id\":\"wh_", |c| c.is_ascii_hexdigit(), "FRESH");
    golden("send.txt", &transcript);
}

#[test]
fn secret_prints_a_fresh_signing_secret_that_dev_and_send_accept() {
    let first = stdout(&run(&["secret"]));
    let second = stdout(&run(&["secret"]));
    assert_ne!(first, second, "two secrets are the same");
    let secret = first.trim();
    let key = secret.strip_prefix("whsec_").unwrap_or_else(|| panic!("{secret:?} is not whsec_…"));
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(key).unwrap();
    assert_eq!(bytes.len(), 32);
    assert!(openai_trigger::signature::SecretSet::parse(secret).is_ok());
}

#[test]
fn dev_without_a_secret_makes_one_and_says_how_to_send() {
    let port = free_port();
    let output_lines = Dev::start_without_secret(port);
    let secret = output_lines
        .iter()
        .find_map(|line| line.split_once("fresh test secret, ").map(|(_, s)| s.trim().to_owned()))
        .unwrap_or_else(|| panic!("dev did not print its secret: {output_lines:?}"));
    assert!(secret.starts_with("whsec_") && secret.chars().skip(6).all(base64ish), "{secret:?}");
    let hint = output_lines.iter().find(|l| l.contains("openai-trigger send")).expect("a send hint");
    assert!(hint.contains(&format!("http://127.0.0.1:{port}/")) && hint.contains(&secret), "{hint}");
}

#[test]
fn started_by_a_person_in_a_terminal_it_says_what_this_mode_is() {
    use std::io::Read;
    // `script` (util-linux) gives the binary a terminal as stdin, as a person's shell would.
    let binary = env!("CARGO_BIN_EXE_openai-trigger");
    let mut child = std::process::Command::new("script")
        .args(["-qec", binary, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run script(1) from util-linux");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("--help") {
                break;
            }
        }
        seen
    });
    let deadline = std::time::Instant::now() + WAIT;
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let seen = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    assert!(seen.contains("Dify plugin protocol"), "no word for the person at the terminal: {seen:?}");
    assert!(seen.contains("openai-trigger demo") && seen.contains("--help"), "{seen:?}");
}

#[test]
fn dev_stops_with_a_clear_error_when_its_plugin_process_dies() {
    let port = free_port();
    let mut dev = Dev::start(SECRET, port);
    // dev listens before its plugin is up; the banner comes once the plugin answered.
    dev.wait_for_line("Playing Dify at");
    // The plugin is dev's only child; kill it as a crash would.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", dev.pid())).unwrap();
    let plugin: i32 = children.split_whitespace().next().expect("dev has a plugin child").parse().unwrap();
    assert!(std::process::Command::new("kill").args(["-9", &plugin.to_string()]).status().unwrap().success());
    let url = format!("http://127.0.0.1:{port}/");
    let sent = run(&["send", "batch.completed", "--url", &url, "--secret", SECRET]);
    assert!(!sent.status.success(), "a delivery to a dev without its plugin cannot succeed");
    let (status, stderr) = dev.wait_exit();
    assert!(!status.success(), "dev must stop, not answer 500 forever");
    assert!(stderr.contains("start `openai-trigger dev` again"), "{stderr}");
}

#[test]
fn remote_pointed_at_a_web_server_says_it_is_not_the_debugging_port() {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // Like a web server: read the request's first bytes, answer 400 with a page, then drain
        // what the client still sends (closing with unread data would reset the connection).
        stream.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
        let mut buf = [0u8; 65536];
        let _ = stream.read(&mut buf);
        let _ = stream
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n\r\n<!DOCTYPE HTML><html></html>\n");
        let _ = stream.shutdown(std::net::Shutdown::Write);
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    });
    let output = run(&["remote", "--url", &format!("127.0.0.1:{port}"), "--key", "k"]);
    server.join().unwrap();
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("answered like a web server") && err.contains("Plugins → Debug"), "{err}");
}

#[test]
fn dev_prints_one_line_per_run_for_people() {
    let port = free_port();
    let dev = Dev::start_with(SECRET, port, &[]);
    let url = format!("http://127.0.0.1:{port}/");
    let id = format!("wh_lines_{}", std::process::id());
    for _ in 0..2 {
        assert!(
            run(&["send", "batch.completed", "--url", &url, "--secret", SECRET, "--webhook-id", &id]).status.success()
        );
    }
    let ran = dev.wait_for_line("batch_completed runs");
    assert!(ran.starts_with(&format!("batch.completed {id} → batch_completed runs, ")), "{ran}");
    assert!(ran.contains("batch_id=b"), "{ran}");
    let duplicate = dev.wait_for_line("nothing runs");
    assert_eq!(duplicate, format!("batch.completed {id} → 200, nothing runs: duplicate"));
    assert!(!run(&["send", "batch.completed", "--url", &url, "--secret", OTHER_SECRET]).status.success());
    let rejected = dev.wait_for_line("401");
    assert!(rejected.ends_with("→ 401, nothing runs: no_matching_signature"), "{rejected}");
}
