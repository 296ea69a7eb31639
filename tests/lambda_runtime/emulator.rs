//! cargo-lambda's Lambda emulator (`cargo lambda watch --only-lambda-apis`):
//! it serves the Lambda Runtime API the function's `lambda_runtime` loop
//! polls, and the Invoke API and Function URLs callers use. The test plays
//! Lambda's sandbox: it starts the function binary (built once, debug) with
//! the template's environment and the emulator's `AWS_LAMBDA_RUNTIME_API`.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

pub const BINARIES: [&str; 4] = ["webhook-intake", "batch-export", "deliver", "reconcile"];
pub const CARGO_LAMBDA_VAR: &str = "DATAOUT_CARGO_LAMBDA";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The target directory this test was built in (`<dir>/debug/deps/<test>`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot place the target directory from {}", exe.display()))
}

/// Newest modification time of the files under `dir`.
fn newest(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        }
    }
    newest
}

/// The directory of the four function binaries, built by the same cargo
/// run as this test (`cargo test --workspace`, `./scripts/test`) or before
/// it. Not built from here: a cargo run inside the test inherits the
/// test's environment and rebuilds what the outer run built, both ways.
/// A binary older than its sources fails the test rather than testing
/// old code.
pub fn binaries() -> Result<PathBuf> {
    let dir = target_dir()?.join("debug");
    let root = repo_root();
    let build = format!(
        "cargo build {}",
        BINARIES.map(|b| format!("-p {b}")).join(" ")
    );
    for b in BINARIES {
        let bin = dir.join(b);
        let built = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .map_err(|_| {
                anyhow!(
                    "{} is not built: run `{build}` (./scripts/test builds it)",
                    bin.display()
                )
            })?;
        let sources = [
            root.join("shared/src"),
            root.join("functions").join(b).join("src"),
        ]
        .iter()
        .map(|d| newest(d))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH);
        if built < sources {
            bail!(
                "{} is older than its sources: run `{build}` first",
                bin.display()
            );
        }
    }
    Ok(dir)
}

/// cargo-lambda: `$DATAOUT_CARGO_LAMBDA`, else the project venv's (where
/// `./scripts/test` installs it).
pub fn cargo_lambda() -> PathBuf {
    let path = std::env::var(CARGO_LAMBDA_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/cargo-lambda"));
    assert!(
        path.is_file(),
        "cargo-lambda not found at {}: run ./scripts/test (it installs it into .venv), \
         or `.venv/bin/python -m pip install cargo-lambda==1.9.2`, or set {CARGO_LAMBDA_VAR}",
        path.display()
    );
    path
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn wait_for_port(port: u16, within: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < within {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on 127.0.0.1:{port} after {within:?}")
}

/// One emulator and the function deployment it runs.
pub struct Emulator {
    pub port: u16,
    emulator: Child,
    function: std::sync::Mutex<Option<Child>>,
    pub log_dir: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(f) = self.function.get_mut().ok().and_then(Option::as_mut) {
            let _ = f.kill();
            let _ = f.wait();
        }
        let _ = self.emulator.kill();
        let _ = self.emulator.wait();
    }
}

impl Emulator {
    pub fn start() -> Result<Emulator> {
        let port = free_port()?;
        let log_dir = tempfile::tempdir()?;
        let log = std::fs::File::create(log_dir.path().join("emulator.log"))?;
        let emulator = Command::new(cargo_lambda())
            .current_dir(repo_root())
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--invoke-address",
                "127.0.0.1",
            ])
            .arg("--invoke-port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting cargo lambda watch")?;
        let mut e = Emulator {
            port,
            emulator,
            function: std::sync::Mutex::new(None),
            log_dir,
        };
        if let Err(err) = wait_for_port(port, Duration::from_secs(60)) {
            let log = e.emulator_log();
            let _ = e.emulator.kill();
            bail!("{err}; emulator log:\n{log}");
        }
        Ok(e)
    }

    pub fn emulator_log(&self) -> String {
        std::fs::read_to_string(self.log_dir.path().join("emulator.log")).unwrap_or_default()
    }

    /// The function's stdout (EMF lines) and stderr (logs).
    pub fn function_output(&self) -> (String, String) {
        let read =
            |n: &str| std::fs::read_to_string(self.log_dir.path().join(n)).unwrap_or_default();
        (read("function.stdout"), read("function.stderr"))
    }

    /// Start `binary` as Lambda starts a sandbox: only the given
    /// environment, plus the runtime's own variables.
    pub fn start_function(&mut self, binary: &str, env: &BTreeMap<String, String>) -> Result<()> {
        let dir = binaries()?;
        let out = std::fs::File::create(self.log_dir.path().join("function.stdout"))?;
        let err = std::fs::File::create(self.log_dir.path().join("function.stderr"))?;
        let child = Command::new(dir.join(binary))
            .env_clear()
            .envs(env)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", dir.join(binary).display()))?;
        *self.function.lock().map_err(|_| anyhow!("poisoned"))? = Some(child);
        Ok(())
    }

    /// The function's exit status, if it has ended.
    fn exited(&self) -> Result<Option<std::process::ExitStatus>> {
        let mut guard = self.function.lock().map_err(|_| anyhow!("poisoned"))?;
        let f = guard.as_mut().context("no function started")?;
        Ok(f.try_wait()?)
    }

    /// Wait for the function process to end (a failed init).
    pub fn wait_function_exit(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the function is still running after {within:?}")
    }

    /// Send `req`; fail at once, with the function's output, if the
    /// function dies meanwhile (the emulator would hold the request).
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let sent = req.send();
        tokio::pin!(sent);
        loop {
            tokio::select! {
                resp = &mut sent => return Ok(resp?),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Some(status) = self.exited()? {
                        let (out, err) = self.function_output();
                        bail!("the function exited ({status}) before answering:\n{out}{err}");
                    }
                }
            }
        }
    }

    /// The Invoke API (what `cargo lambda invoke --data-file` sends).
    pub async fn invoke(&self, event: &Value) -> Result<(u16, Value)> {
        let resp = self
            .send(
                client()
                    .post(format!(
                        "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
                        self.port
                    ))
                    .json(event),
            )
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, body))
    }

    /// A request to the function's URL: the emulator turns it into the
    /// Function URL event (payload 2.0) and the answer back into HTTP.
    pub async fn function_url(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, String)> {
        let mut req = client().post(format!("http://127.0.0.1:{}/lambda-url/_{path}", self.port));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = self.send(req.body(body)).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("a plain HTTP client builds")
}
