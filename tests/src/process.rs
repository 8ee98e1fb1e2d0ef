//! Child processes and ports: what moto and the function binaries share.
//!
//! Every child runs in its own process group and is killed (the whole group)
//! by PID when its owner is dropped. On Linux the child also receives SIGKILL
//! if the test process dies first, so a killed test run leaves no server
//! listening behind it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::HarnessError;

/// A port that was free a moment ago on 127.0.0.1. Another process can take
/// it before the caller binds it: callers that hand the port to a child
/// retry on that race.
pub(crate) fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| HarnessError(format!("binding 127.0.0.1:0 failed: {e}")))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| HarnessError(format!("reading the bound port failed: {e}")))
}

/// Puts the child in its own process group (so the group can be killed
/// without touching the test process) and, on Linux, asks the kernel to kill
/// it when the test process goes away.
pub(crate) fn isolate(command: &mut tokio::process::Command) {
    command.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs between fork and exec and calls only prctl and
    // getppid, which are async-signal-safe.
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent died before prctl took effect: don't outlive it.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// SIGKILL to a child's process group (the child leads it, see [`isolate`]),
/// and to the child itself in case it left the group.
pub(crate) fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: plain syscalls on a PID we spawned; a stale PID at worst gets
    // ESRCH.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

/// 64 unpredictable bits: enough for request ids and resource-name suffixes,
/// without a random-number crate.
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A version-4-shaped UUID, as Lambda request ids and SNS message ids look.
pub(crate) fn uuid_like() -> String {
    let a = random_u64();
    let b = random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_like_has_the_uuid_shape() {
        let id = uuid_like();
        let groups: Vec<_> = id.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12], "{id}");
        assert_ne!(uuid_like(), uuid_like());
    }
}
