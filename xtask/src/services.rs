//! `cargo xtask services up|down|status`: a real S3/SQS test server on loopback.
//!
//! The server is [moto](https://github.com/getmoto/moto) in server mode,
//! installed into a virtualenv under `target/services/venv` on first use. It
//! runs in its own process group so that it outlives xtask; its state lives in
//! files under `target/services/`:
//!
//! * `moto.pid` — the server's process id,
//! * `moto.log` — the server's stdout and stderr (appended to),
//! * `services.env` — `KEY=VALUE` lines telling the tests where the server is
//!   (see [`ENV_S3`] and [`ENV_SQS_ENDPOINT`]).
//!
//! Only 127.0.0.1 is ever used.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Error;
use crate::http;

/// The moto version installed, as shown in progress messages.
pub(crate) const MOTO_VERSION: &str = "5.2.5";

/// What `pip install` gets; written to [`MARKER_FILE`] once installed.
/// The first entry must pin [`MOTO_VERSION`].
const PIP_PACKAGES: [&str; 3] = ["moto[s3,sqs]==5.2.5", "flask", "flask-cors"];

/// Name of the file in the venv recording which [`PIP_PACKAGES`] it holds.
const MARKER_FILE: &str = ".s3db-pinned";

/// The only address the server listens on.
const HOST: &str = "127.0.0.1";

/// The bucket created on a fresh server.
pub(crate) const BUCKET: &str = "s3db-test";

/// Variable in `services.env`: S3 URL with credentials and bucket,
/// `http://test:test@127.0.0.1:PORT/s3db-test`.
pub(crate) const ENV_S3: &str = "S3DB_TEST_S3";

/// Variable in `services.env`: SQS endpoint, `http://127.0.0.1:PORT`.
pub(crate) const ENV_SQS_ENDPOINT: &str = "S3DB_TEST_SQS_ENDPOINT";

/// How long a fresh server may take to answer HTTP.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the server gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between two polls of the server or its process.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How the line written to `moto.log` before each start begins.
const LOG_HEADER: &str = "--- xtask: starting moto_server";

/// Lines of `moto.log` shown when the server fails to start.
const LOG_TAIL_LINES: usize = 20;

/// The files of the test server, all under `<workspace>/target/services/`.
struct Paths {
    /// The workspace root, for showing paths relative to it.
    root: PathBuf,
    /// `target/services/`.
    dir: PathBuf,
    /// The virtualenv holding moto.
    venv: PathBuf,
    /// The server's stdout and stderr.
    log: PathBuf,
    /// The server's process id.
    pid: PathBuf,
    /// The variables for the tests.
    env: PathBuf,
}

impl Paths {
    /// The paths for the workspace at `root`.
    fn new(root: &Path) -> Self {
        let dir = root.join("target").join("services");
        Self {
            root: root.to_path_buf(),
            venv: dir.join("venv"),
            log: dir.join("moto.log"),
            pid: dir.join("moto.pid"),
            env: dir.join("services.env"),
            dir,
        }
    }

    /// `path` relative to the workspace root, for messages.
    fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// A server that answers HTTP.
struct Running {
    /// Its process id.
    pid: u32,
    /// The port it listens on, on 127.0.0.1.
    port: u16,
}

/// `cargo xtask services <up|down|status>`.
pub(crate) fn cli(root: &Path, args: &[String]) -> Result<ExitCode, Error> {
    let paths = Paths::new(root);
    match args {
        [action] if action == "up" => {
            up(root)?;
            println!("{}:", paths.show(&paths.env));
            for (key, value) in read_env(&paths)? {
                println!("  {key}={value}");
            }
        }
        [action] if action == "down" => down(root)?,
        [action] if action == "status" => status(&paths)?,
        _ => {
            return Err(Error::Usage(
                "usage: cargo xtask services <up|down|status>".to_owned(),
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A test server that `up` made sure of.
pub(crate) struct Up {
    /// The variables of `services.env`, for the environment of the tests.
    pub(crate) env: Vec<(String, String)>,
    /// Whether this call started it (and so the caller should stop it again).
    pub(crate) started_here: bool,
}

/// Makes sure the test server runs, installing and starting it if needed.
pub(crate) fn up(root: &Path) -> Result<Up, String> {
    let paths = Paths::new(root);
    fs::create_dir_all(&paths.dir)
        .map_err(|err| format!("cannot create {}: {err}", paths.show(&paths.dir)))?;

    let started_here = if let Some(running) = reusable(&paths)? {
        ensure_bucket(running.port, true)?;
        write_env(&paths, running.port)?;
        eprintln!(
            "xtask: moto already running (pid {}) at http://{HOST}:{}, reusing it (and leaving it running)",
            running.pid, running.port
        );
        false
    } else {
        install(&paths)?;
        start(&paths)?;
        true
    };
    Ok(Up {
        env: read_env(&paths)?,
        started_here,
    })
}

/// Stops the test server, if one runs, and removes its pid and env files.
///
/// Says nothing when no server runs.
pub(crate) fn down(root: &Path) -> Result<(), String> {
    let paths = Paths::new(root);
    if let Some(pid) = read_pid(&paths)?
        && is_moto(pid)
    {
        stop(pid)?;
        eprintln!("xtask: moto stopped (pid {pid})");
    }
    remove_state(&paths)
}

/// Prints whether the test server runs, and where.
fn status(paths: &Paths) -> Result<(), String> {
    let pid = read_pid(paths)?;
    match (pid, read_port(paths)) {
        (Some(pid), Some(port)) if is_moto(pid) && http::request(port, "GET", "/").is_ok() => {
            println!("moto: running (pid {pid}) at http://{HOST}:{port}");
            println!("log: {}", paths.show(&paths.log));
            println!("{}:", paths.show(&paths.env));
            for (key, value) in read_env(paths)? {
                println!("  {key}={value}");
            }
        }
        (Some(pid), _) if is_moto(pid) => {
            println!(
                "moto: process {pid} is alive but does not answer; see {} \
                 (`cargo xtask services down` stops it)",
                paths.show(&paths.log)
            );
        }
        (Some(_), _) => println!(
            "moto: not running (stale {}; `cargo xtask services up` or `down` cleans it)",
            paths.show(&paths.pid)
        ),
        (None, _) => println!("moto: not running"),
    }
    Ok(())
}

/// The server named by the pid file, if it is alive and answers.
///
/// Anything else is cleaned up: a stale pid file is removed, and a moto
/// process that does not answer (or whose port is unknown) is stopped.
fn reusable(paths: &Paths) -> Result<Option<Running>, String> {
    let Some(pid) = read_pid(paths)? else {
        return Ok(None);
    };
    if !is_moto(pid) {
        eprintln!(
            "xtask: removing stale {} (process {pid} is gone)",
            paths.show(&paths.pid)
        );
        remove_state(paths)?;
        return Ok(None);
    }
    if let Some(port) = read_port(paths)
        && http::request(port, "GET", "/").is_ok()
    {
        return Ok(Some(Running { pid, port }));
    }
    eprintln!("xtask: moto (pid {pid}) does not answer, restarting it");
    stop(pid)?;
    remove_state(paths)?;
    Ok(None)
}

/// Installs moto into the venv unless the marker file says it is there.
fn install(paths: &Paths) -> Result<(), String> {
    let bin = paths.venv.join("bin");
    let server = bin.join("moto_server");
    let marker = paths.venv.join(MARKER_FILE);
    let wanted = PIP_PACKAGES.join(" ");
    let installed = fs::read_to_string(&marker).is_ok_and(|text| text.trim() == wanted);
    if installed && server.is_file() {
        return Ok(());
    }

    eprintln!(
        "xtask: installing moto {MOTO_VERSION} into {} (first run only, ~20 s)",
        paths.show(&paths.venv)
    );
    let pip = bin.join("pip");
    if !pip.is_file() {
        let mut venv = Command::new("python3");
        venv.arg("-m").arg("venv").arg(&paths.venv);
        run_quietly(&mut venv, "python3 -m venv", paths)?;
    }
    let mut pip_install = Command::new(&pip);
    pip_install
        .args(["install", "--disable-pip-version-check", "--quiet"])
        .args(PIP_PACKAGES);
    run_quietly(&mut pip_install, "pip install", paths)?;
    if !server.is_file() {
        return Err(format!(
            "pip installed {wanted} but {} is missing",
            paths.show(&server)
        ));
    }
    fs::write(&marker, format!("{wanted}\n"))
        .map_err(|err| format!("cannot write {}: {err}", paths.show(&marker)))?;
    eprintln!("xtask: moto {MOTO_VERSION} installed");
    Ok(())
}

/// Runs an installation step with inherited stdio; fails unless it succeeds.
fn run_quietly(command: &mut Command, shown: &str, paths: &Paths) -> Result<(), String> {
    let status = command.stdin(Stdio::null()).status().map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            format!(
                "cannot run `{shown}`: {:?} not found; the S3/SQS test server needs \
                 python3 with the venv module (e.g. `apt-get install python3-venv`)",
                command.get_program()
            )
        } else {
            format!("cannot run `{shown}`: {err}")
        }
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{shown}` failed ({status}) while installing moto into {}",
            paths.show(&paths.venv)
        ))
    }
}

/// Starts a fresh server on a free port, waits for it, creates the bucket
/// and writes `services.env`. Stops the server again if any step fails.
fn start(paths: &Paths) -> Result<(), String> {
    let port = free_port()?;
    let server = paths.venv.join("bin").join("moto_server");
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(|err| format!("cannot open {}: {err}", paths.show(&paths.log)))?;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    writeln!(
        log,
        "{LOG_HEADER} {MOTO_VERSION} on {HOST}:{port} (unix time {since_epoch}) ---"
    )
    .and_then(|()| log.flush())
    .map_err(|err| format!("cannot write {}: {err}", paths.show(&paths.log)))?;
    let log_err = log
        .try_clone()
        .map_err(|err| format!("cannot reopen {}: {err}", paths.show(&paths.log)))?;

    let mut child = Command::new(&server)
        .args(["-H", HOST, "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|err| format!("cannot start {}: {err}", paths.show(&server)))?;
    let pid = child.id();

    let started = fs::write(&paths.pid, format!("{pid}\n"))
        .map_err(|err| format!("cannot write {}: {err}", paths.show(&paths.pid)))
        .and_then(|()| wait_ready(&mut child, port, paths))
        .and_then(|()| ensure_bucket(port, false))
        .and_then(|()| write_env(paths, port));
    if let Err(err) = started {
        if let Err(stop_err) = stop(pid) {
            eprintln!("xtask: warning: {stop_err}");
        }
        // Reap the child; it has exited or been killed by now.
        let _ = child.try_wait();
        if let Err(clean_err) = remove_state(paths) {
            eprintln!("xtask: warning: {clean_err}");
        }
        return Err(err);
    }
    eprintln!(
        "xtask: moto {MOTO_VERSION} running (pid {pid}) at http://{HOST}:{port}, bucket `{BUCKET}`, log {}",
        paths.show(&paths.log)
    );
    Ok(())
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("cannot find a free port on {HOST}: {err}"))
}

/// Waits until the fresh server answers HTTP, or fails with the log's tail.
fn wait_ready(child: &mut Child, port: u16, paths: &Paths) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|err| format!("cannot watch moto_server (pid {}): {err}", child.id()))?
        {
            return Err(format!(
                "moto_server exited ({status}) before answering on {HOST}:{port}; \
                 last lines of {}:\n{}",
                paths.show(&paths.log),
                log_tail(&paths.log)
            ));
        }
        if http::request(port, "GET", "/").is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "moto_server did not answer on {HOST}:{port} within {} s; last lines of {}:\n{}",
                READY_TIMEOUT.as_secs(),
                paths.show(&paths.log),
                log_tail(&paths.log)
            ));
        }
        sleep(POLL_INTERVAL);
    }
}

/// Creates the test bucket with `PUT /s3db-test`; with `exists_ok`, an
/// answer saying the bucket already exists (409) is fine too.
fn ensure_bucket(port: u16, exists_ok: bool) -> Result<(), String> {
    let status = http::request(port, "PUT", &format!("/{BUCKET}"))
        .map_err(|err| format!("cannot create bucket `{BUCKET}`: {err}"))?;
    if (200..300).contains(&status) || (exists_ok && status == 409) {
        Ok(())
    } else {
        Err(format!(
            "creating bucket `{BUCKET}` on {HOST}:{port} answered HTTP {status}"
        ))
    }
}

/// The contents of `services.env` for a server on `port`.
fn env_contents(port: u16) -> String {
    format!(
        "{ENV_S3}=http://test:test@{HOST}:{port}/{BUCKET}\n{ENV_SQS_ENDPOINT}=http://{HOST}:{port}\n"
    )
}

/// Writes `services.env` for a server on `port`.
fn write_env(paths: &Paths, port: u16) -> Result<(), String> {
    fs::write(&paths.env, env_contents(port))
        .map_err(|err| format!("cannot write {}: {err}", paths.show(&paths.env)))
}

/// The `KEY=VALUE` pairs of `services.env`.
fn read_env(paths: &Paths) -> Result<Vec<(String, String)>, String> {
    let text = fs::read_to_string(&paths.env)
        .map_err(|err| format!("cannot read {}: {err}", paths.show(&paths.env)))?;
    Ok(parse_env(&text))
}

/// Parses `KEY=VALUE` lines, skipping blank lines and `#` comments.
fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// The port recorded in `services.env`, if any.
fn read_port(paths: &Paths) -> Option<u16> {
    let text = fs::read_to_string(&paths.env).ok()?;
    port_from_env(&text)
}

/// The port of the SQS endpoint in the contents of `services.env`.
fn port_from_env(text: &str) -> Option<u16> {
    parse_env(text)
        .into_iter()
        .find(|(key, _)| key == ENV_SQS_ENDPOINT)?
        .1
        .strip_prefix(&format!("http://{HOST}:"))?
        .trim_end_matches('/')
        .parse()
        .ok()
}

/// The process id in the pid file; `None` if there is none. An unreadable
/// pid file is removed as stale.
fn read_pid(paths: &Paths) -> Result<Option<u32>, String> {
    match fs::read_to_string(&paths.pid) {
        Ok(text) => match text.trim().parse() {
            Ok(pid) => Ok(Some(pid)),
            Err(_) => {
                eprintln!(
                    "xtask: removing unreadable {} ({:?})",
                    paths.show(&paths.pid),
                    text.trim()
                );
                remove_state(paths)?;
                Ok(None)
            }
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("cannot read {}: {err}", paths.show(&paths.pid))),
    }
}

/// Removes the pid and env files, if present.
fn remove_state(paths: &Paths) -> Result<(), String> {
    for file in [&paths.pid, &paths.env] {
        match fs::remove_file(file) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(format!("cannot remove {}: {err}", paths.show(file))),
        }
    }
    Ok(())
}

/// Whether `/proc` can tell about processes (Linux).
fn has_proc() -> bool {
    Path::new("/proc/self/stat").exists()
}

/// Whether process `pid` exists and has not exited (zombies count as exited).
fn is_alive(pid: u32) -> bool {
    if has_proc() {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !matches!(process_state(&stat), Some('Z' | 'X')))
    } else {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// The state letter in the contents of `/proc/PID/stat` (after `(comm)`).
fn process_state(stat: &str) -> Option<char> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.trim_start().chars().next()
}

/// Whether process `pid` is alive and is a moto server, so that a reused pid
/// of some unrelated process is never signalled. Without `/proc`, being alive
/// has to do.
fn is_moto(pid: u32) -> bool {
    if !is_alive(pid) {
        return false;
    }
    if !has_proc() {
        return true;
    }
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.windows(11).any(|w| w == b"moto_server"))
}

/// Sends `signal` to the server's process group (its pid, since it was
/// started with `process_group(0)`), or to the process alone if that fails.
fn signal(signal: &str, pid: u32) -> bool {
    let send = |target: String| {
        Command::new("kill")
            .args([format!("-{signal}"), "--".to_owned(), target])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    send(format!("-{pid}")) || send(pid.to_string())
}

/// Waits up to `timeout` for process `pid` to exit; true if it did.
fn wait_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL_INTERVAL / 2);
    }
}

/// Stops process `pid`: SIGTERM, up to [`STOP_TIMEOUT`] to exit, then SIGKILL.
fn stop(pid: u32) -> Result<(), String> {
    signal("TERM", pid);
    if wait_exit(pid, STOP_TIMEOUT) {
        return Ok(());
    }
    eprintln!(
        "xtask: moto (pid {pid}) still running {} s after SIGTERM, sending SIGKILL",
        STOP_TIMEOUT.as_secs()
    );
    signal("KILL", pid);
    if wait_exit(pid, STOP_TIMEOUT) {
        Ok(())
    } else {
        Err(format!("cannot stop moto (pid {pid}), even with SIGKILL"))
    }
}

/// The last [`LOG_TAIL_LINES`] lines the latest start wrote to the log,
/// indented, for error messages.
fn log_tail(log: &Path) -> String {
    match fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            // Only this start's lines: from the last header written by `start`.
            let this_run = lines
                .iter()
                .rposition(|line| line.starts_with(LOG_HEADER))
                .unwrap_or(0);
            let start = lines.len().saturating_sub(LOG_TAIL_LINES).max(this_run);
            lines[start..]
                .iter()
                .map(|line| format!("    {line}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(err) => format!("    (cannot read {}: {err})", log.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_pins_the_moto_version() {
        assert_eq!(PIP_PACKAGES[0], format!("moto[s3,sqs]=={MOTO_VERSION}"));
    }

    #[test]
    fn env_file_has_exactly_the_documented_lines() {
        assert_eq!(
            env_contents(4566),
            "S3DB_TEST_S3=http://test:test@127.0.0.1:4566/s3db-test\n\
             S3DB_TEST_SQS_ENDPOINT=http://127.0.0.1:4566\n"
        );
        assert_eq!(port_from_env(&env_contents(4566)), Some(4566));
        assert_eq!(port_from_env("S3DB_TEST_S3=x\n"), None);
    }

    #[test]
    fn parses_env_lines() {
        assert_eq!(
            parse_env("# comment\n\nA=1\nB = x=y \nnot a pair\n"),
            vec![
                ("A".to_owned(), "1".to_owned()),
                ("B".to_owned(), "x=y".to_owned())
            ]
        );
    }

    #[test]
    fn reads_the_process_state() {
        assert_eq!(process_state("42 (moto) S 1 42"), Some('S'));
        assert_eq!(process_state("42 (a) b) Z 1 42"), Some('Z'));
        assert_eq!(process_state("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_but_not_moto() {
        let pid = std::process::id();
        assert!(is_alive(pid));
        assert!(!is_moto(pid) || !has_proc());
    }
}
