//! The wire contract between Sluice processes, generated from `proto/sluice/*.proto`.

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/sluice.v1.rs"));
}
