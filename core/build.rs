//! `sqlx::migrate!` embeds `migrations/` at compile time but does not tell cargo to rebuild
//! when a migration file changes; this does (the approach sqlx documents).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
