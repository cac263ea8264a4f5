//! `kubectl-nic`: nicctl as a kubectl plugin (`kubectl nic doctor`, `kubectl nic diff -f ...`,
//! `kubectl nic upgrade status`); kubectl runs it when it is on the PATH.

fn main() -> std::process::ExitCode {
    nicctl::main("kubectl nic")
}
