//! Named pause points for the crash tests. With the `failpoints` feature and
//! `HOOKLAKE_FAILPOINT=<name>`, the sink prints `failpoint <name> reached` to stderr and
//! stops there until it is killed. Without the feature this compiles to nothing.

/// The points the crash tests stop the sink at.
pub const BEFORE_FILES: &str = "before-files";
pub const AFTER_FILES: &str = "after-files";
pub const AFTER_TABLE_COMMIT: &str = "after-table-commit";

#[cfg(feature = "failpoints")]
pub async fn hit(name: &str) {
    if std::env::var("HOOKLAKE_FAILPOINT").is_ok_and(|f| f == name) {
        eprintln!("failpoint {name} reached");
        std::future::pending::<()>().await;
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn hit(_name: &str) {}
