//! A handle on `localstack/faultproxy.py` for one test: starts a private
//! proxy in front of LocalStack, sets its rules, reads its request log, and
//! stops it when dropped. Each test gets its own proxy, so rules never leak
//! between tests running in parallel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct FaultProxy {
    child: Child,
    pub port: u16,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream` (LocalStack).
    pub fn start(upstream: &str) -> FaultProxy {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/localstack/faultproxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--upstream", upstream])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs localstack/faultproxy.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("faultproxy did not say its port: {line:?}"));
        FaultProxy { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "{method} /__faultproxy/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{response}");
        serde_json::from_str(body).unwrap()
    }

    /// Adds a rule (see localstack/faultproxy.py for the fields).
    pub fn add_rule(&self, rule: Value) {
        self.call("POST", "rules", &rule.to_string());
    }

    /// Removes every rule: from now on the proxy only forwards.
    pub fn clear_rules(&self) {
        self.call("DELETE", "rules", "");
    }

    /// How many requests each rule has faulted, in the order they were added.
    pub fn fired(&self) -> Vec<u64> {
        self.call("GET", "rules", "")["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["fired"].as_u64().unwrap())
            .collect()
    }

    /// Every request seen: method, path, query, target, fault.
    pub fn log(&self) -> Vec<Value> {
        self.call("GET", "log", "")["log"]
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
