//! Reading the master's registry (`RegistryEntry`s): which process serves an interface.
//! The master routes service calls with it, and so does the HTTP gateway with its copy, so
//! both choose the same process.

use sluice_proto::v1::RegistryEntry;

/// The running process of service `name`: of the given version, or without one the last
/// one in the registry (the one loaded last).
pub fn running_service<'a>(
    entries: &'a [RegistryEntry],
    name: &str,
    version: Option<&str>,
) -> Option<&'a RegistryEntry> {
    entries
        .iter()
        .filter(|e| e.process_type == "service" && e.status == "running")
        .rfind(|e| {
            e.interfaces.first().is_some_and(|i| {
                let mut parts = i.splitn(3, ':');
                parts.next() == Some("service")
                    && parts.next() == Some(name)
                    && version.is_none_or(|v| parts.next() == Some(v))
            })
        })
}

/// Whether the process `entry` describes is still there to answer the calls it has: the
/// same process (network id and pid), running or stopping. A process that died or was
/// restarted never answers them.
pub fn still_serving(entries: &[RegistryEntry], entry: &RegistryEntry) -> bool {
    entries.iter().any(|e| {
        e.network_id == entry.network_id
            && e.pid == entry.pid
            && matches!(e.status.as_str(), "running" | "stopping")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(interface: &str, status: &str, pid: u32) -> RegistryEntry {
        RegistryEntry {
            network_id: format!("n-{interface}"),
            process_type: "service".into(),
            interfaces: vec![interface.into()],
            endpoints: vec![format!("tcp://127.0.0.1:{}", 20_000 + pid)],
            pid,
            status: status.into(),
        }
    }

    #[test]
    fn the_running_process_of_a_service() {
        let entries = [
            entry("service:S:1.0", "running", 1),
            entry("service:S:2.0", "running", 2),
            entry("service:T:1.0", "starting", 3),
        ];
        let pid = |name, version| running_service(&entries, name, version).map(|e| e.pid);
        assert_eq!(pid("S", None), Some(2), "the last one loaded");
        assert_eq!(pid("S", Some("1.0")), Some(1));
        assert_eq!(pid("S", Some("3.0")), None);
        assert_eq!(pid("T", None), None, "not running yet");
        assert_eq!(pid("U", None), None);
    }

    #[test]
    fn a_process_serves_until_it_is_gone_or_restarted() {
        let was = entry("service:S:1.0", "running", 1);
        assert!(still_serving(std::slice::from_ref(&was), &was));
        assert!(still_serving(
            &[entry("service:S:1.0", "stopping", 1)],
            &was
        ));
        assert!(!still_serving(
            &[entry("service:S:1.0", "running", 9)],
            &was
        ));
        assert!(!still_serving(&[entry("service:S:1.0", "failed", 1)], &was));
        assert!(!still_serving(&[], &was));
    }
}
