//! YAML-RPC (placeholder while the module is written).
