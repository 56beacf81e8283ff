//! The machine a comparison ran on, for the report: CPU model and count (`/proc/cpuinfo`),
//! memory, kernel, load average at the start, tool versions, the source revision and the
//! date.
//!
//! Invariant: describing never fails; what cannot be read reads "unknown".

use std::process::Command;

#[derive(Clone, Debug)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub load_average: String,
    pub date: String,
    pub revision: String,
    pub tools: Vec<String>,
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let uname = rustix::system::uname();
        Machine {
            cpu_model: cpu_model(&cpuinfo),
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            memory_gib: memory_kib(&meminfo) as f64 / (1024.0 * 1024.0),
            kernel: uname.release().to_string_lossy().into_owned(),
            load_average: load_average(),
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            revision: first_line("git", &["describe", "--always", "--dirty"]),
            tools: vec![
                first_line("iptables", &["--version"]),
                first_line("nft", &["--version"]),
                first_line("ovs-vswitchd", &["--version"]),
                first_line("iperf3", &["--version"]),
            ],
        }
    }

    /// One line for the report's heading.
    pub fn summary(&self) -> String {
        format!(
            "{} ({} CPUs), {:.0} GiB, Linux {}",
            self.cpu_model, self.cpus, self.memory_gib, self.kernel
        )
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The 1-minute load average, if `/proc/loadavg` reads.
pub fn load_average_1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
}

fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn memory_kib(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_and_memory_come_from_proc_texts() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\n";
        assert_eq!(cpu_model(cpuinfo), "AMD EPYC 7B13");
        assert_eq!(cpu_model(""), "unknown CPU");
        assert_eq!(
            memory_kib("MemFree: 1 kB\nMemTotal:       24576000 kB\n"),
            24_576_000
        );
    }
}
