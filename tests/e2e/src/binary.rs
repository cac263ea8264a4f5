//! A controller's real binary as a process: its flags from the environment, its health and
//! metrics server on a free loopback port, its log in a file, SIGTERM and SIGKILL.
//!
//! Binaries are looked up beside the test executable's `deps/` directory (`target/debug`), or
//! in `NETOP_BIN_DIR`; build them first with `cargo build --bins` (`cargo test --workspace`
//! does, `just e2e` and `.ci/run` too).

use crate::KUBECONFIG_VAR;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running controller binary; killed when dropped, printing its log if the test failed.
pub struct ControllerProcess {
    name: String,
    child: Child,
    /// Address of its `/metrics`, `/healthz` and `/readyz` server.
    pub addr: SocketAddr,
    log: PathBuf,
}

/// Where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("NETOP_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps").to_path_buf()
}

fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    socket.local_addr().expect("bound").port()
}

impl ControllerProcess {
    /// Starts `binary` for operands namespace `namespace`, talking to the cluster under test,
    /// with `env` on top of the defaults (text logs, plain Kubernetes).
    pub fn start(binary: &str, namespace: &str, env: &[(&str, &str)]) -> Self {
        let path = bin_dir().join(binary);
        assert!(path.is_file(), "{} is missing: build the binaries first (cargo build --bins)", path.display());
        let kubeconfig = std::env::var(KUBECONFIG_VAR).expect("the cluster under test");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
        let log = std::env::temp_dir().join(format!("{}.log", crate::unique_name(&format!("netop-e2e-{binary}"))));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(&path);
        command
            .env("KUBECONFIG", kubeconfig)
            .env("OPERANDS_NAMESPACE", namespace)
            .env("METRICS_ADDR", addr.to_string())
            .env("LOG_FORMAT", "text")
            .env("CLUSTER_TYPE", "kubernetes")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
        Self { name: binary.to_string(), child, addr, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET path` on its server: status code and body (`None` while it does not answer).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        crate::eventually(&format!("{} /readyz to answer 200", self.name), crate::WAIT, || async {
            match self.get("/readyz").await {
                Some((200, _)) => Ok(()),
                other => Err(format!("{other:?}; log:\n{}", self.log_tail())),
            }
        })
        .await;
    }

    /// Its `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.map(|(_, body)| body).unwrap_or_default()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {}", self.pid());
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit: its status and how long it took.
    pub async fn terminate(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        self.signal("TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                return (status, started.elapsed());
            }
            if started.elapsed() > timeout {
                panic!("{} did not exit within {timeout:?} of SIGTERM; log:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills it with SIGKILL (no cleanup: a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of {} ({}):\n{}", self.name, self.log.display(), self.log_tail());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
