//! Files written so that a crash never leaves a half-written key or certificate, and keys
//! are never readable by anyone else.
//!
//! Every write goes to a temporary file in the same directory (created with its final
//! permissions), is flushed to disk, and is then moved into place in one step; the
//! directory is flushed too, so the new name survives a power loss.
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Permissions of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Permissions of certificates and other public files.
pub const PUBLIC_MODE: u32 = 0o644;

/// The largest file a command reads (certificates, CSRs, keys and bundles are far smaller).
pub const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// A file written to its temporary name, waiting to be moved into place.
#[derive(Debug)]
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
}

impl Staged {
    /// Writes `contents` to a temporary file beside `target`, with `mode`, and syncs it.
    pub fn write(target: &Path, contents: &[u8], mode: u32) -> Result<Self> {
        let dir = parent(target);
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file path", target.display()))?;
        let mut attempt = 0u32;
        loop {
            let temp = dir.join(format!(
                ".{}.tmp-{}-{attempt}",
                name.to_string_lossy(),
                std::process::id()
            ));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&temp)
            {
                Ok(mut file) => {
                    let staged = Staged {
                        temp,
                        target: target.to_owned(),
                    };
                    file.write_all(contents)
                        .and_then(|()| file.sync_all())
                        .with_context(|| format!("cannot write {}", staged.temp.display()))?;
                    return Ok(staged);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create a file in {}", dir.display()));
                }
            }
        }
    }

    /// Moves the file into place only if nothing exists at the target yet.
    pub fn commit_new(self) -> Result<()> {
        fs::hard_link(&self.temp, &self.target).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!(
                    "{} already exists; refusing to overwrite it",
                    self.target.display()
                )
            } else {
                anyhow::Error::new(e).context(format!("cannot create {}", self.target.display()))
            }
        })?;
        self.finish()
    }

    /// Moves the file into place, replacing whatever is there in one step.
    pub fn commit_replace(self) -> Result<()> {
        fs::rename(&self.temp, &self.target)
            .with_context(|| format!("cannot replace {}", self.target.display()))?;
        sync_dir(parent(&self.target))
    }

    fn finish(self) -> Result<()> {
        let _ = fs::remove_file(&self.temp);
        sync_dir(parent(&self.target))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // After a commit the temporary name is gone and this does nothing.
        let _ = fs::remove_file(&self.temp);
    }
}

/// Writes a set of new files all-or-nothing as far as the process is concerned: every
/// file is staged first; then each is linked into place; if any link fails, the ones
/// already placed are removed again. Existing files are never overwritten.
pub fn write_all_new(files: &[(PathBuf, Vec<u8>, u32)]) -> Result<()> {
    let existing: Vec<String> = files
        .iter()
        .filter(|(path, _, _)| path.symlink_metadata().is_ok())
        .map(|(path, _, _)| path.display().to_string())
        .collect();
    if !existing.is_empty() {
        bail!(
            "refusing to overwrite existing files: {}; move them away or choose another directory",
            existing.join(", ")
        );
    }
    let staged = files
        .iter()
        .map(|(path, contents, mode)| Staged::write(path, contents, *mode))
        .collect::<Result<Vec<_>>>()?;
    let mut placed: Vec<PathBuf> = Vec::new();
    for file in staged {
        let target = file.target.clone();
        if let Err(e) = file.commit_new() {
            for path in &placed {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
        placed.push(target);
    }
    Ok(())
}

/// Files that replace others as one step of a change: each is written to a temporary name
/// and flushed first ([`Staging::stage`]), then all are moved into place together, the
/// files they replace kept aside ([`Staging::apply`]), until the change is kept
/// ([`Applied::keep`]) or undone (dropping the [`Applied`]).
#[derive(Debug, Default)]
pub struct Staging {
    staged: Vec<Staged>,
}

impl Staging {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `contents` beside `target`, flushed; nothing is replaced yet.
    pub fn stage(&mut self, target: &Path, contents: &[u8], mode: u32) -> Result<()> {
        self.staged.push(Staged::write(target, contents, mode)?);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Moves every staged file into place, keeping each file it replaces under a name
    /// beside it. If a move fails, those already made are undone.
    pub fn apply(self) -> Result<Applied> {
        let mut applied = Applied { moved: Vec::new() };
        for staged in self.staged {
            let target = staged.target.clone();
            let backup = if target.symlink_metadata().is_ok() {
                let backup = staged.temp.with_extension("previous");
                let _ = fs::remove_file(&backup);
                fs::hard_link(&target, &backup)
                    .with_context(|| format!("cannot keep {} aside", target.display()))?;
                Some(backup)
            } else {
                None
            };
            applied.moved.push((target.clone(), backup));
            fs::rename(&staged.temp, &target)
                .with_context(|| format!("cannot replace {}", target.display()))?;
        }
        for dir in applied.dirs() {
            sync_dir(&dir)?;
        }
        Ok(applied)
    }
}

/// Files moved into place by [`Staging::apply`]; dropped without [`Applied::keep`], the
/// files they replaced come back (and files that were new are removed).
#[derive(Debug)]
pub struct Applied {
    moved: Vec<(PathBuf, Option<PathBuf>)>,
}

impl Applied {
    /// The change holds: the replaced files are removed.
    pub fn keep(mut self) {
        for (_, backup) in std::mem::take(&mut self.moved) {
            if let Some(backup) = backup {
                let _ = fs::remove_file(backup);
            }
        }
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .moved
            .iter()
            .map(|(t, _)| parent(t).to_owned())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        let dirs = self.dirs();
        for (target, backup) in self.moved.drain(..).rev() {
            let _ = match backup {
                Some(backup) => fs::rename(&backup, &target),
                None => fs::remove_file(&target),
            };
        }
        for dir in dirs {
            let _ = sync_dir(&dir);
        }
    }
}

/// Replaces one file atomically.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    Staged::write(path, contents, mode)?.commit_replace()
}

/// Moves `from` to `to` in one step (replacing `to`) and syncs the directory.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
    sync_dir(parent(to))
}

/// Reads a file of at most [`MAX_INPUT`] bytes; `-` reads standard input.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
    } else {
        File::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    if buf.len() as u64 > MAX_INPUT {
        bail!(
            "{} is larger than {} MiB; it is not a certificate, key or CSR",
            path.display(),
            MAX_INPUT / 1024 / 1024
        );
    }
    Ok(buf)
}

/// Creates `dir` (mode 0700: it will hold private keys) if it does not exist.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!("{} exists and is not a directory", dir.display()),
        Err(_) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
            Ok(())
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

/// Finds the staged CA directory at or under `path` — `path` itself, `path/tls` or
/// `path/server/tls` (k3s's `rotate-ca --path=DIR/server`) — and reads its files and those
/// of its `etcd/` directory, by path relative to it. A file belongs to a staged directory
/// when `is_staged` says so of its name; the first place holding one is taken.
pub fn read_staged_dir(
    path: &Path,
    is_staged: impl Fn(&str) -> bool,
) -> Result<(PathBuf, std::collections::BTreeMap<String, Vec<u8>>)> {
    let places = [path.to_owned(), path.join("tls"), path.join("server/tls")];
    for place in &places {
        if list_files(place)?.iter().any(|name| is_staged(name)) {
            return Ok((place.clone(), read_listing(place)?));
        }
    }
    bail!(
        "{} holds no staged CA files (root-ca.crt or .pem, server-ca.crt, client-ca.crt, peer-ca.crt or etcd/peer-ca.crt, service.key); looked in {}",
        path.display(),
        places
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The regular files of `dir` and of `dir/etcd` with their contents, by relative path;
/// none when `dir` does not exist. Hidden files are left out.
pub fn read_listing(dir: &Path) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    list_files(dir)?
        .into_iter()
        .map(|name| Ok((name.clone(), read_input(&dir.join(&name))?)))
        .collect()
}

/// The regular files in `dir` and in `dir/etcd`, by relative path; none when `dir` does
/// not exist. Hidden files are left out.
fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for (sub, prefix) in [(dir.to_owned(), ""), (dir.join("etcd"), "etcd/")] {
        let entries = match fs::read_dir(&sub) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", sub.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", sub.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.path().is_file() {
                names.push(format!("{prefix}{name}"));
            }
        }
    }
    names.sort();
    Ok(names)
}
