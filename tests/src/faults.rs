//! Ways to make a dependency of the sink unavailable for a while, for the fault tests and
//! the soak: a table's data or metadata folder made unwritable (`chattr +i`: the tests run
//! as root, for whom permission bits do not stop a write), and the SQLite catalog locked
//! by another process.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::python;

/// Folders made immutable until this is dropped (also when a test fails half-way, so
/// that its temporary directory can still be removed).
#[derive(Debug)]
pub struct Frozen(Vec<PathBuf>);

/// Makes `dirs` immutable: nothing can be created, removed or renamed in them.
pub fn freeze(dirs: &[PathBuf]) -> Frozen {
    for d in dirs {
        chattr("+i", d);
    }
    Frozen(dirs.to_vec())
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for d in &self.0 {
            chattr("-i", d);
        }
    }
}

fn chattr(flag: &str, dir: &Path) {
    let out = Command::new("chattr").arg(flag).arg(dir).output().expect("chattr (e2fsprogs) runs");
    assert!(out.status.success(), "chattr {flag} {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
}

/// The folders of the one table under `warehouse` (a local path): its `data` folder with
/// every day partition folder in it, and its `metadata` folder. `None` before the table
/// was created and before its first run wrote data (the `data` folder appears with the
/// first file; freezing a folder that does not exist fails).
#[derive(Debug, Clone)]
pub struct TableDirs {
    pub data: Vec<PathBuf>,
    pub metadata: PathBuf,
}

impl TableDirs {
    pub fn find(warehouse: &Path) -> Option<Self> {
        let metadata = find_dir(warehouse, "metadata")?;
        let table = metadata.parent()?.to_path_buf();
        let data_dir = table.join("data");
        if !data_dir.is_dir() {
            return None;
        }
        let mut data = vec![data_dir.clone()];
        if let Ok(entries) = std::fs::read_dir(&data_dir) {
            data.extend(entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()));
        }
        Some(Self { data, metadata })
    }
}

fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(root).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if entry.file_name() == name {
            return Some(path);
        }
        if let Some(found) = find_dir(&path, name) {
            return Some(found);
        }
    }
    None
}

/// Holds an exclusive lock on the SQLite database `db` for `hold` (tests/py/hold_lock.py)
/// and returns once it is let go.
pub async fn lock_catalog(db: &Path, hold: Duration) {
    let seconds = format!("{:.3}", hold.as_secs_f64());
    let out = python::run(
        "hold_lock.py",
        &["--db", db.to_str().expect("UTF-8 path"), "--seconds", &seconds],
        "",
        hold + Duration::from_secs(60),
    )
    .await;
    assert!(out.contains("released"), "hold_lock.py: {out}");
}
