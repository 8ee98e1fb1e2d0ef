//! Order statistics over a set of durations.

use std::time::Duration;

/// A sorted sample of durations.
#[derive(Debug, Clone, Default)]
pub struct Sample(Vec<Duration>);

impl Sample {
    pub fn new(mut values: Vec<Duration>) -> Sample {
        values.sort_unstable();
        Sample(values)
    }

    /// The `p`-th percentile (0–100) by nearest rank; `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        Some(self.0[rank.clamp(1, self.0.len()) - 1])
    }

    /// The median: the mean of the two middle values for an even count.
    pub fn median(&self) -> Option<Duration> {
        let n = self.0.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(self.0[n / 2]),
            _ => Some((self.0[n / 2 - 1] + self.0[n / 2]) / 2),
        }
    }
}

/// Milliseconds with a precision that suits the magnitude.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// `a / b` as a ratio, `None` if `b` is zero.
pub fn ratio(a: Duration, b: Duration) -> Option<f64> {
    (!b.is_zero()).then(|| a.as_secs_f64() / b.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: &[u64]) -> Sample {
        Sample::new(ms.iter().map(|&m| Duration::from_millis(m)).collect())
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let s = sample(&[5, 1, 4, 2, 3, 10, 9, 8, 7, 6]);
        assert_eq!(s.percentile(50.0), Some(Duration::from_millis(5)));
        assert_eq!(s.percentile(90.0), Some(Duration::from_millis(9)));
        assert_eq!(s.percentile(99.0), Some(Duration::from_millis(10)));
        assert_eq!(s.percentile(0.0), Some(Duration::from_millis(1)));
        assert_eq!(s.percentile(100.0), Some(Duration::from_millis(10)));
    }

    #[test]
    fn the_median_averages_the_middle_pair() {
        assert_eq!(sample(&[3, 1, 2]).median(), Some(Duration::from_millis(2)));
        assert_eq!(
            sample(&[4, 1, 3, 2]).median(),
            Some(Duration::from_micros(2500))
        );
        assert_eq!(sample(&[]).median(), None);
    }

    #[test]
    fn ms_formats_by_magnitude() {
        assert_eq!(ms(Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(ms(Duration::from_micros(12345)), "12.3 ms");
        assert_eq!(ms(Duration::from_millis(123)), "123 ms");
    }
}
