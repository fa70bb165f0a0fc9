//! `--waves`: in which groups the hosts of a fleet are activated, and `--pause`.
//!
//! A wave is a cumulative threshold: `1,50%,100%` activates one host, then hosts up
//! to half of the fleet, then the rest. Counts and percentages may be mixed; a
//! percentage rounds up (so `10%` of 3 hosts is one host, never zero), and the last
//! wave always takes every host that is left, whatever the list says.

/// One threshold of `--waves`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Hosts activated so far, counting earlier waves.
    Count(usize),
    /// Percentage of the fleet activated so far.
    Percent(f64),
}

/// The parsed `--waves` list; empty means all hosts at once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Waves(pub Vec<Step>);

impl std::str::FromStr for Waves {
    type Err = String;

    /// Parses `1,50%,100%`: the one-line error names the bad item.
    fn from_str(text: &str) -> Result<Waves, String> {
        let mut steps = Vec::new();
        for item in text.split(',').map(str::trim) {
            let bad = || {
                format!("invalid --waves item {item:?} in {text:?}: expected a host count (2) or a percentage (50%) above 0")
            };
            let step = match item.strip_suffix('%') {
                Some(p) => {
                    let v: f64 = p.trim().parse().map_err(|_| bad())?;
                    if !(v > 0.0 && v <= 100.0) {
                        return Err(format!(
                            "invalid --waves item {item:?} in {text:?}: a percentage must be above 0 and at most 100"
                        ));
                    }
                    Step::Percent(v)
                }
                None => match item.parse::<usize>() {
                    Ok(n) if n > 0 => Step::Count(n),
                    _ => return Err(bad()),
                },
            };
            steps.push(step);
        }
        Ok(Waves(steps))
    }
}

impl Waves {
    /// Splits `hosts` hosts into waves of host indexes, in order. Thresholds that add
    /// no host (`2,2` or `50%` of one host after `1`) are skipped; what the list leaves
    /// out forms the last wave.
    pub fn split(&self, hosts: usize) -> Vec<std::ops::Range<usize>> {
        let mut waves = Vec::new();
        let mut done = 0;
        for step in &self.0 {
            let upto = match *step {
                Step::Count(n) => n,
                // Rounded up: a percentage of a small fleet still names a host.
                Step::Percent(p) => ((p / 100.0) * hosts as f64).ceil() as usize,
            }
            .min(hosts);
            if upto > done {
                waves.push(done..upto);
                done = upto;
            }
        }
        if done < hosts {
            waves.push(done..hosts);
        }
        waves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(spec: &str, n: usize) -> Vec<std::ops::Range<usize>> {
        spec.parse::<Waves>()
            .map(|w| w.split(n))
            .unwrap_or_default()
    }

    #[test]
    fn waves_are_cumulative_and_the_rest_forms_the_last_wave() {
        assert_eq!(split("1,50%,100%", 8), vec![0..1, 1..4, 4..8]);
        assert_eq!(split("1,100%", 3), vec![0..1, 1..3]);
        assert_eq!(split("2", 5), vec![0..2, 2..5]);
        assert_eq!(split("10%", 3), vec![0..1, 1..3]);
        assert_eq!(split("1,1,50%", 2), vec![0..1, 1..2]);
        assert_eq!(split("5", 2), vec![0..2]);
        assert_eq!(Waves::default().split(4), vec![0..4]);
        assert!(Waves::default().split(0).is_empty());
    }

    #[test]
    fn bad_waves_are_one_line_errors() {
        for bad in ["0", "-1", "x", "0%", "150%", "1,,2", "", "50%%"] {
            let err = bad.parse::<Waves>().err().unwrap_or_default();
            assert!(err.starts_with("invalid --waves item"), "{bad}: {err}");
            assert!(!err.contains('\n'));
        }
    }
}
