//! The two sides of a ghost diff: an `s3://bucket/prefix/` location read
//! through the target's object store, or a plain directory on this machine
//! (read-only: nothing is created or written under it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use sluice::config::Location;
use sluice::store::{ObjectStore, ObjectStoreExt};

/// One side of the comparison.
#[derive(Debug, Clone)]
pub enum Place {
    /// A bucket and prefix in the target's object store.
    Store {
        /// The store (S3, or the local pipeline directory).
        store: Arc<dyn ObjectStore>,
        /// Where the outputs are.
        loc: Location,
        /// For a local pipeline directory: the folder the bucket must be.
        local_bucket_dir: Option<PathBuf>,
    },
    /// A directory on this machine; keys are paths relative to it.
    Dir {
        /// The directory.
        root: PathBuf,
    },
}

/// What a side holds: relative key → size, plus how many bookkeeping
/// objects were left out.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    /// Output objects by key relative to the side's prefix.
    pub files: BTreeMap<String, u64>,
    /// Objects skipped as bookkeeping (`_sluice/`, `_quarantine/`, dot files).
    pub ignored: usize,
}

/// Bookkeeping keys: any path segment starting with `_` (`_sluice/`,
/// `_quarantine/`) or `.` (the local store's `.sluice/`).
pub fn is_bookkeeping(rel: &str) -> bool {
    rel.split('/')
        .any(|s| s.starts_with('_') || s.starts_with('.'))
}

impl Place {
    /// A directory side, which must exist.
    pub fn dir(path: &Path) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("directory {}: cannot open", path.display()))?;
        if !meta.is_dir() {
            bail!("{} is not a directory", path.display());
        }
        let root = path
            .canonicalize()
            .with_context(|| format!("resolving {}", path.display()))?;
        Ok(Place::Dir { root })
    }

    /// How the report names this side.
    pub fn describe(&self) -> String {
        match self {
            Place::Store { loc, .. } => loc.to_string(),
            Place::Dir { root } => format!("{}/", root.display()),
        }
    }

    /// The full name of one object, for messages.
    pub fn name_of(&self, rel: &str) -> String {
        match self {
            Place::Store { loc, .. } => format!("s3://{}/{}{rel}", loc.bucket, loc.prefix),
            Place::Dir { root } => root.join(rel).display().to_string(),
        }
    }

    /// Whether the two sides overlap (one would list the other's outputs).
    pub fn overlaps(&self, other: &Place) -> bool {
        match (self, other) {
            (Place::Store { loc: a, .. }, Place::Store { loc: b, .. }) => a.overlaps(b),
            (Place::Dir { root: a }, Place::Dir { root: b }) => {
                a.starts_with(b) || b.starts_with(a)
            }
            _ => false,
        }
    }

    /// Every output object, by key relative to the prefix.
    pub async fn list(&self) -> anyhow::Result<Listing> {
        let mut out = Listing::default();
        match self {
            Place::Store {
                store,
                loc,
                local_bucket_dir,
            } => {
                if let Some(dir) = local_bucket_dir {
                    if !dir.is_dir() {
                        bail!(
                            "{loc}: no such bucket in the local directory (no folder {})",
                            dir.display()
                        );
                    }
                }
                let objects = store
                    .list(&loc.bucket, &loc.prefix)
                    .await
                    .with_context(|| format!("listing {loc}"))?;
                for o in objects {
                    let Some(rel) = o.key.strip_prefix(&loc.prefix) else {
                        continue;
                    };
                    if rel.is_empty() || is_bookkeeping(rel) {
                        out.ignored += 1;
                    } else {
                        out.files.insert(rel.to_string(), o.size);
                    }
                }
            }
            Place::Dir { root } => {
                let root = root.clone();
                out = tokio::task::spawn_blocking(move || {
                    let mut l = Listing::default();
                    walk(&root, "", false, &mut l).map(|()| l)
                })
                .await
                .context("listing task failed")??;
            }
        }
        Ok(out)
    }

    /// The whole body of one object (outputs are per partition and bounded).
    pub async fn read(&self, rel: &str) -> anyhow::Result<Bytes> {
        match self {
            Place::Store { store, loc, .. } => {
                let key = format!("{}{rel}", loc.prefix);
                store
                    .get_bytes(&loc.bucket, &key)
                    .await
                    .with_context(|| format!("reading {}", self.name_of(rel)))
            }
            Place::Dir { root } => {
                let path = root.join(rel);
                let data = tokio::fs::read(&path)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(Bytes::from(data))
            }
        }
    }
}

/// Collect files under `dir`; everything under a bookkeeping segment is
/// counted as ignored.
fn walk(dir: &Path, rel: &str, ignoring: bool, out: &mut Listing) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let ignore = ignoring || is_bookkeeping(&name);
        let path = entry.path();
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("reading the metadata of {}", path.display()))?;
        if meta.is_dir() {
            walk(&path, &key, ignore, out)?;
        } else if meta.is_file() {
            if ignore {
                out.ignored += 1;
            } else {
                out.files.insert(key, meta.len());
            }
        }
    }
    Ok(())
}
