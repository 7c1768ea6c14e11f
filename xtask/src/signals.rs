//! The little signal handling xtask needs.

/// Ignores Ctrl-C in xtask itself. QEMU (same process group) still gets it and exits, so xtask
/// can flush the logs and report the run; a child that ignores it (gdb) keeps its own handler.
pub fn ignore_interrupts() {
    // SAFETY: installing SIG_IGN for SIGINT touches no memory of ours and is always valid.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// Asks a QEMU process to exit (QEMU shuts down cleanly on SIGTERM).
pub fn stop_qemu(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: sending a signal has no memory-safety preconditions; the pid is our own child,
    // not yet reaped, so it cannot name an unrelated process.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// Lets a closed pipe end xtask quietly (as with other command-line tools) instead of making
/// `println!` panic, e.g. in `cargo xtask run --list | head -1`.
pub fn default_broken_pipe() {
    // SAFETY: restoring the default SIGPIPE disposition is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
