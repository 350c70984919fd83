//! Running the independent readers and signers in tests/py with the venv's Python.

use std::{ffi::OsStr, process::Stdio, time::Duration};

use tokio::{io::AsyncWriteExt, process::Command};

use crate::tools;

/// Runs `tests/py/<script> args...` with `stdin`, returning stdout; fails the test with
/// stderr when the script fails or takes longer than `timeout`.
pub async fn run(script: &str, args: &[&str], stdin: &str, timeout: Duration) -> String {
    let mut command = Command::new(tools::python());
    command.arg(tools::py_script(script)).args(args);
    output(command, &format!("{script} {args:?}"), stdin, timeout).await
}

/// Runs the Python program `code` (`python -c`) with `args` as its `sys.argv[1:]`,
/// returning stdout; fails the test as `run` does.
pub async fn run_code(code: &str, args: &[&OsStr], timeout: Duration) -> String {
    let mut command = Command::new(tools::python());
    command.arg("-c").arg(code).args(args);
    output(command, &format!("python -c … {args:?}"), "", timeout).await
}

/// `command`'s stdout, given `stdin`; `what` names it in the test's failure.
async fn output(mut command: Command, what: &str, stdin: &str, timeout: Duration) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} (scripts/test.sh makes the venv): {e}", tools::python().display()));
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).await.expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {timeout:?}"))
        .expect("python output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed: {}",
        stderr.lines().filter(|l| !l.starts_with('%')).collect::<Vec<_>>().join("\n")
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Signs requests with the senders' libraries (tests/py/sign.py); one header map per request.
pub async fn sign(requests: &serde_json::Value) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let out = run("sign.py", &[], &requests.to_string(), Duration::from_secs(60)).await;
    serde_json::from_str(&out).expect("sign.py prints a JSON list")
}

/// Reads `count` records of `topic` with confluent-kafka + fastavro (tests/py/consume.py).
pub async fn consume(brokers: &str, topic: &str, count: usize, registry: Option<&str>) -> Vec<serde_json::Value> {
    let count = count.to_string();
    let mut args = vec!["--brokers", brokers, "--topic", topic, "--count", &count, "--timeout", "60"];
    if let Some(r) = registry {
        args.extend(["--registry", r]);
    }
    let out = run("consume.py", &args, "", Duration::from_secs(120)).await;
    out.lines().map(|l| serde_json::from_str(l).expect("a JSON record per line")).collect()
}
