//! `mediastack-operator probe URL`, the command of the chart's `helm test`
//! pod: exit 0 on a 2xx answer only.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

/// Serves one HTTP answer with `status` on a loopback port; returns its URL.
fn serve_once(status: &'static str) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}/readyz", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 1024];
        let n = conn.read(&mut buf).expect("read request");
        let request = String::from_utf8_lossy(&buf[..n]);
        assert!(request.starts_with("GET /readyz "), "{request}");
        let body = "x";
        write!(
            conn,
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write answer");
    });
    (url, handle)
}

fn probe(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mediastack-operator"))
        .args(["probe", url, "--timeout-seconds", "5"])
        .output()
        .expect("run mediastack-operator probe")
}

#[test]
fn probe_succeeds_on_2xx_only() {
    let (url, server) = serve_once("200 OK");
    let out = probe(&url);
    server.join().expect("server");
    assert!(out.status.success(), "{out:?}");

    let (url, server) = serve_once("503 Service Unavailable");
    let out = probe(&url);
    server.join().expect("server");
    assert!(!out.status.success(), "a 503 must fail the probe: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("503"),
        "{out:?}"
    );
}

#[test]
fn probe_fails_when_nothing_listens() {
    // A port that was free a moment ago: nothing answers there.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = probe(&format!("http://127.0.0.1:{port}/readyz"));
    assert!(!out.status.success(), "{out:?}");
}
