//! Serverless mode as Dify Cloud and the Marketplace's install test use it: `python -m main` with
//! INSTALL_METHOD=serverless runs serverless.py, a Flask app on waitress in front of this
//! binary's own HTTP transport. Many concurrent `/invoke` sessions, a client that disconnects
//! mid-stream, malformed bodies, `/health` under load, `GET /` (the install test), and SIGTERM ending
//! both processes. The Python packages come from the venv `scripts/test.sh` prepares with the pins of
//! requirements.txt.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{self, EXE, RawRequest, SECRET, dispatch_data, event_body, unix_now};

const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py-serverless-front");
const PLUGIN: &str = env!("CARGO_MANIFEST_DIR");

struct Front {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Front {
    /// The plugin directory as the offline package lays it out (main.py, serverless.py and this
    /// binary as bin/openai-trigger-linux-<arch>), started in serverless mode on a free port.
    fn start(mode: &str) -> Front {
        let python = Path::new(VENV).join("bin/python");
        assert!(
            Command::new(&python).args(["-c", "import flask, waitress, requests"]).status().is_ok_and(|s| s.success()),
            "{} lacks flask, waitress or requests: run scripts/test.sh, which prepares it from requirements.txt",
            python.display()
        );
        let dir = std::env::temp_dir().join(format!("openai-trigger-it-serverless-{}-{mode}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        for file in ["main.py", "serverless.py"] {
            std::fs::copy(Path::new(PLUGIN).join(file), dir.join(file)).unwrap();
        }
        let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
        std::fs::copy(EXE, dir.join(format!("bin/openai-trigger-linux-{arch}"))).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (host_var, port_var) = if mode == "aws_lambda" {
            ("AWS_LAMBDA_HOST", "AWS_LAMBDA_PORT")
        } else {
            ("SERVERLESS_HOST", "SERVERLESS_PORT")
        };
        let mut child = Command::new(&python)
            .args(["-m", "main"])
            .current_dir(&dir)
            .env("INSTALL_METHOD", mode)
            .env(host_var, "127.0.0.1")
            .env(port_var, port.to_string())
            .env_remove("OPENAI_TRIGGER_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, banner) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = banner
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("a Flask banner on stdout within 20 s");
            if line.contains("Serving Flask app") {
                break;
            }
        }
        Front { child, port, dir }
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(support::WAIT)).unwrap();
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
        let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(&response[split..])
        } else {
            response[split..].to_vec()
        };
        (status, body)
    }

    fn core_pid(&self) -> Option<u32> {
        let children = std::fs::read_to_string(format!("/proc/{}/task/{}/children", self.child.id(), self.child.id()))
            .unwrap_or_default();
        children.split_whitespace().next().and_then(|p| p.parse().ok())
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16).unwrap();
        data = &data[end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    out
}

fn envelope(session: &str, n: usize) -> Vec<u8> {
    let now = unix_now();
    let raw = RawRequest::signed(
        SECRET,
        &format!("wh_sl_{session}"),
        now,
        event_body("batch.completed", &format!("evt_{n}"), now, &json!({"id": format!("batch_{n}")})),
    );
    json!({"session_id": session, "conversation_id": null, "message_id": null, "app_id": null, "endpoint_id": null,
           "context": null, "event": "request", "data": dispatch_data(&raw.bytes(), SECRET, support::ENDPOINT)})
    .to_string()
    .into_bytes()
}

fn lines(body: &[u8]) -> Vec<Value> {
    body.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect()
}

#[test]
fn serverless_mode_answers_like_stdio_under_load() {
    let front = Front::start("serverless");
    // The Marketplace install test's probe.
    assert_eq!(front.request("GET", "/", b"").0, 404);
    let (status, body) = front.request("GET", "/health", b"");
    assert_eq!((status, body.as_slice()), (200, &b"OK"[..]));

    // Many concurrent sessions, with /health asked all along.
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|worker| {
                let front = &front;
                scope.spawn(move || {
                    for i in 0..25 {
                        let session = format!("w{worker}-{i}");
                        let (status, body) =
                            front.request("POST", "/invoke?action=dispatch_trigger_event", &envelope(&session, i));
                        assert_eq!(status, 200);
                        let lines = lines(&body);
                        assert_eq!(lines.len(), 2, "{session}: {lines:?}");
                        assert_eq!(lines[0]["session_id"], session.as_str());
                        assert_eq!(lines[0]["data"]["data"]["events"], json!(["batch_completed", "any_event"]));
                        assert_eq!(lines[1]["data"], json!({"type": "end", "data": {}}));
                    }
                })
            })
            .collect();
        for _ in 0..20 {
            assert_eq!(front.request("GET", "/health", b"").0, 200);
        }
        for worker in workers {
            worker.join().unwrap();
        }
    });

    // A client that disconnects before reading costs nothing else.
    for i in 0..5 {
        let mut stream = TcpStream::connect(("127.0.0.1", front.port)).unwrap();
        let body = envelope(&format!("gone-{i}"), i);
        write!(stream, "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
        stream.write_all(&body[..body.len() / 2]).unwrap();
        drop(stream);
    }
    let (status, body) = front.request("POST", "/invoke", &envelope("after-disconnects", 1));
    assert_eq!((status, lines(&body).len()), (200, 2));

    // Malformed bodies: the binary's JSON refusal, passed through.
    for (body, reason) in [
        (&b"not json"[..], "body is not a JSON object"),
        (b"{\"event\":\"request\",\"data\":{}}", "envelope has no session_id"),
    ] {
        let (status, answer) = front.request("POST", "/invoke", body);
        assert_eq!(status, 400);
        assert_eq!(
            serde_json::from_slice::<Value>(&answer).unwrap(),
            json!({"errorType": "InvalidRequest", "errorMessage": reason})
        );
    }
    assert_eq!(front.request("GET", "/invoke", b"").0, 405);
}

#[test]
fn the_aws_lambda_variant_and_sigterm_end_both_processes() {
    let mut front = Front::start("aws_lambda");
    let (status, body) = front.request("POST", "/invoke", &envelope("lambda-1", 1));
    assert_eq!((status, lines(&body).len()), (200, 2));
    let core = front.core_pid().expect("the binary runs as the front's child");
    assert!(Path::new(&format!("/proc/{core}")).exists());
    Command::new("kill").args(["-TERM", &front.child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while front.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the front did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{core}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(Instant::now() < gone, "the binary outlived the front");
        std::thread::sleep(Duration::from_millis(50));
    }
}
