//! Peak memory and CPU time of a running process, from `/proc/<pid>`.

use std::time::Duration;

/// `VmHWM` (the peak resident set size) in bytes, if the process is alive
/// and the kernel reports it.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kib(&status, "VmHWM:")
}

/// The CPU time every thread of the process has run so far (the first field
/// of `/proc/<pid>/task/<tid>/schedstat`, in nanoseconds), if the process is
/// alive. Unlike wall time it does not grow while the function waits for a
/// CPU that moto or the runner holds, so it shows the work the function
/// itself does.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = Duration::ZERO;
    for task in tasks.flatten() {
        // A thread that ended between the listing and the read is skipped.
        if let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat"))
            && let Some(nanos) = parse_schedstat(&schedstat)
        {
            total += nanos;
        }
    }
    Some(total)
}

fn parse_schedstat(schedstat: &str) -> Option<Duration> {
    let nanos: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn parse_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    let mut words = line[field.len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_time_on_cpu() {
        assert_eq!(
            parse_schedstat("1234567 89 10\n"),
            Some(Duration::from_nanos(1_234_567))
        );
        assert_eq!(parse_schedstat(""), None);
        let own = cpu_time(std::process::id()).unwrap();
        assert!(own > Duration::ZERO);
    }

    #[test]
    fn reads_the_high_water_mark() {
        let status =
            "Name:\tbootstrap\nVmPeak:\t  20000 kB\nVmHWM:\t    9876 kB\nVmRSS:\t 9000 kB\n";
        assert_eq!(parse_kib(status, "VmHWM:"), Some(9876 * 1024));
        assert_eq!(parse_kib("Name: x\n", "VmHWM:"), None);
    }

    #[test]
    fn reads_our_own_peak() {
        assert!(peak_rss(std::process::id()).is_some_and(|bytes| bytes > 0));
    }
}
