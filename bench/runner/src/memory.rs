//! Peak memory of a running process, from `/proc/<pid>/status`.

/// `VmHWM` (the peak resident set size) in bytes, if the process is alive
/// and the kernel reports it.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_kib(&status, "VmHWM:")
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
