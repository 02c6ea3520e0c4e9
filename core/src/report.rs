//! The system's status and its interfaces as operators read them: `sluice status`,
//! `sluice interfaces` and `ostatus` over the gateway's `/remote-command` print the same
//! text, written here once.

use sluice_proto::v1::{InterfaceList, SystemStatus};

/// The system's status, as `sluice status` prints it.
pub fn status_text(s: &SystemStatus) -> String {
    let mut text = format!(
        "instance:  {}\nstatus:    {}\nsession:   {}\nmaster:    pid {} on {}\n\
         version:   {}\nuptime:    {} s\nprocesses: {}\n",
        s.instance_key,
        s.status,
        s.session_id,
        s.master_pid,
        s.host,
        s.version,
        s.uptime_ms / 1000,
        s.processes.len()
    );
    for p in &s.processes {
        text.push_str(&format!(
            "  {:<24} {:<14} pid {:<8} {:<10} {}\n",
            p.network_id,
            p.process_type,
            p.pid,
            p.status,
            p.endpoints.join(",")
        ));
    }
    text
}

/// The loaded interfaces and their processes, as `sluice interfaces` prints them.
pub fn interfaces_text(list: &InterfaceList) -> String {
    let mut text = format!(
        "{:<9} {:<28} {:<10} {:<9} {:<8} {:<11} PID\n",
        "TYPE", "NAME", "VERSION", "AUTOSTART", "ENABLED", "STATUS"
    );
    for i in &list.interfaces {
        text.push_str(&format!(
            "{:<9} {:<28} {:<10} {:<9} {:<8} {:<11} {}\n",
            i.r#type,
            i.name,
            i.version,
            i.autostart,
            i.enabled,
            i.status,
            if i.pid > 0 {
                i.pid.to_string()
            } else {
                "-".into()
            }
        ));
    }
    text
}
