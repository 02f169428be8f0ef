//! The processes a test starts (`lab sim`, a controller, a browser): each is killed and reaped when dropped, so a
//! failed assertion never leaves one running, and every wait on one is bounded, so a test fails instead of hanging.
//! Signals are sent with `nix`, not with a `kill` program that a machine may lack.
//!
//! Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a process may take to end once told to (killed, interrupted) or a short command may take (`lab
/// status`, `lab confirm`): far beyond what any needs, so only a hang reaches it.
pub const STOP_BOUND: Duration = Duration::from_secs(30);

/// A process a test started.
pub struct Process {
    pub child: Child,
    what: String,
    /// What it writes to its standard output and error, read on threads of their own when captured, so a full
    /// pipe never stops it.
    captured: Option<(JoinHandle<Vec<u8>>, JoinHandle<Vec<u8>>)>,
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

impl Process {
    /// Starts `cmd`; `what` names it in failures.
    pub fn spawn(cmd: &mut Command, what: &str) -> Process {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{what} did not start: {e}"));
        Process { child, what: what.to_owned(), captured: None }
    }

    /// Starts `cmd` with its standard output and error captured, for [`Process::output_within`].
    pub fn spawn_captured(cmd: &mut Command, what: &str) -> Process {
        Process::try_spawn_captured(cmd, what).unwrap_or_else(|e| panic!("{what} did not start: {e}"))
    }

    /// [`Process::spawn_captured`], returning the error if it cannot start (a program that is not installed).
    pub fn try_spawn_captured(cmd: &mut Command, what: &str) -> std::io::Result<Process> {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let captured = Some((drain(child.stdout.take()), drain(child.stderr.take())));
        Ok(Process { child, what: what.to_owned(), captured })
    }

    /// Whether it is still running (it has not been reaped, so its pid is still its own).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to end, for at most `bound`; `None` if it still runs then.
    pub fn wait_for(&mut self, bound: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if t0.elapsed() < bound => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => return None,
                Err(e) => panic!("cannot wait for {}: {e}", self.what),
            }
        }
    }

    /// Waits for it to end, failing the test if it has not after `bound`.
    pub fn wait_within(&mut self, bound: Duration) -> ExitStatus {
        self.wait_for(bound).unwrap_or_else(|| panic!("{} did not end within {bound:?}", self.what))
    }

    /// Waits for it to end, for at most `bound`, and returns what it printed (started by
    /// [`Process::spawn_captured`]).
    pub fn output_within(mut self, bound: Duration) -> Output {
        let status = self.wait_within(bound);
        let (stdout, stderr) = self.captured.take().expect("the process was started with its output captured");
        Output { status, stdout: stdout.join().expect("stdout read"), stderr: stderr.join().expect("stderr read") }
    }

    /// Sends `signal` if it still runs, and waits for it to end.
    pub fn signal(&mut self, signal: Signal) -> ExitStatus {
        if self.running() {
            let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid fits an i32"));
            kill(pid, signal).unwrap_or_else(|e| panic!("cannot send {signal} to {}: {e}", self.what));
        }
        self.wait_within(STOP_BOUND)
    }

    /// Kills it at once, as a power cut would.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.wait_for(STOP_BOUND);
        }
    }
}

/// Runs a short command to its end, for at most [`STOP_BOUND`], and returns what it printed.
pub fn output(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    Process::spawn_captured(cmd.stdin(Stdio::null()), &what).output_within(STOP_BOUND)
}
