//! The baseline snapshot: the kept vectors and, once trained, the FAISS index, in one file
//! written atomically (temporary file, fsync, rename), so a restart neither re-embeds the history
//! nor retrains. The audit database's `baseline` table stays the authority on which texts the
//! baseline holds: a snapshot covers ids `0..rows` and carries their texts, start-up uses the
//! prefix on which both agree and re-embeds the rest (everything when the snapshot is missing,
//! damaged, or from another model).
//!
//! Layout: `ANOMSNAP`, version (u32 LE), header length (u32 LE), header (JSON), `rows` texts (u32 LE
//! length + UTF-8 each), `rows × 384` f32 LE, index length (u64 LE), index (FAISS `write_index`
//! bytes; empty while exact), SHA-256 of everything before it.

use std::io::Write;
use std::path::{Path, PathBuf};

use faiss::index::IndexImpl;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::baseline::SharedRows;
use super::DIM;

const MAGIC: &[u8; 8] = b"ANOMSNAP";
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("baseline snapshot {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("baseline snapshot {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub model_id: String,
    pub dim: usize,
    pub rows: usize,
    /// The trained index's factory string, or "" while exact.
    pub index: String,
    /// Distinct vectors the trained index was trained on.
    pub trained_on: usize,
    /// The trained IVF index's drift so far (absent in snapshots of other indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<super::index::Drift>,
    pub created_usec: u64,
}

pub struct Snapshot {
    pub header: Header,
    pub texts: Vec<String>,
    pub vectors: Vec<f32>,
    /// The trained index, if the snapshot has one.
    pub index: Option<IndexImpl>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// FAISS writes indexes to files only; the bytes go through a temporary file beside `path`.
fn index_bytes(index: &IndexImpl, path: &Path) -> Result<Vec<u8>, SnapshotError> {
    let tmp = path.with_extension("faiss.tmp");
    let tmp_name = tmp.to_string_lossy().into_owned();
    faiss::write_index(index, &tmp_name).map_err(|e| SnapshotError::Invalid {
        path: path.to_owned(),
        reason: format!("FAISS could not write the index: {e}"),
    })?;
    let bytes = std::fs::read(&tmp).map_err(io(&tmp));
    let _ = std::fs::remove_file(&tmp);
    bytes
}

fn index_from_bytes(bytes: &[u8], path: &Path) -> Result<IndexImpl, SnapshotError> {
    let tmp = path.with_extension("faiss.load.tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    let read = faiss::read_index(tmp.to_string_lossy().as_ref());
    let _ = std::fs::remove_file(&tmp);
    read.map_err(|e| SnapshotError::Invalid {
        path: path.to_owned(),
        reason: format!("FAISS cannot read its index: {e}"),
    })
}

/// Writes a snapshot of `rows` (and `index`, when trained) to `path`, replacing the old one only
/// once the new one is complete on disk.
pub fn write(
    path: &Path,
    header: &Header,
    texts: &[String],
    rows: &SharedRows,
    index: Option<&IndexImpl>,
) -> Result<u64, SnapshotError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let index = match index {
        Some(index) => index_bytes(index, path)?,
        None => Vec::new(),
    };
    let header_json = serde_json::to_vec(header).expect("the header serialises");
    let tmp = path.with_extension("tmp");
    let mut hasher = Sha256::new();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
    let mut put = |bytes: &[u8]| -> Result<(), SnapshotError> {
        hasher.update(bytes);
        out.write_all(bytes).map_err(io(&tmp))
    };
    put(MAGIC)?;
    put(&VERSION.to_le_bytes())?;
    put(&(header_json.len() as u32).to_le_bytes())?;
    put(&header_json)?;
    for text in texts {
        put(&(text.len() as u32).to_le_bytes())?;
        put(text.as_bytes())?;
    }
    for slice in rows.slices() {
        let mut bytes = Vec::with_capacity(slice.len() * 4);
        for v in slice {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        put(&bytes)?;
    }
    put(&(index.len() as u64).to_le_bytes())?;
    put(&index)?;
    let digest: [u8; 32] = hasher.finalize().into();
    out.write_all(&digest).map_err(io(&tmp))?;
    let file = out.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io(&tmp))?;
    let size = file.metadata().map_err(io(&tmp))?.len();
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(size)
}

/// Reads and checks a snapshot; `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let invalid = |reason: &str| SnapshotError::Invalid {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < MAGIC.len() + 8 + 8 + 32 || &bytes[..8] != MAGIC {
        return Err(invalid("not a baseline snapshot (no ANOMSNAP header)"));
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return Err(invalid(
            "checksum mismatch: the file is damaged or cut short",
        ));
    }
    let version = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(invalid(&format!(
            "format version {version}, this build reads {VERSION}"
        )));
    }
    let header_len = u32::from_le_bytes(body[12..16].try_into().expect("4 bytes")) as usize;
    let header_end = 16 + header_len;
    let header: Header = serde_json::from_slice(
        body.get(16..header_end)
            .ok_or_else(|| invalid("header runs past the end"))?,
    )
    .map_err(|e| invalid(&format!("header: {e}")))?;
    if header.dim != DIM {
        return Err(invalid(&format!(
            "{}-d vectors, this build embeds {DIM}",
            header.dim
        )));
    }
    let mut at = header_end;
    // The header's sizes are checked against the file before anything is allocated by them:
    // each row takes at least its text's length field and its vector.
    let room = body.len().saturating_sub(at);
    if header.rows > room / (4 + DIM * 4) {
        return Err(invalid(&format!(
            "header says {} rows, more than the file's {room} bytes can hold",
            header.rows
        )));
    }
    let mut texts = Vec::with_capacity(header.rows);
    for _ in 0..header.rows {
        let len = body
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| invalid("texts run past the end"))?;
        let text = at
            .checked_add(4 + len)
            .and_then(|end| body.get(at + 4..end))
            .ok_or_else(|| invalid("texts run past the end"))?;
        texts.push(String::from_utf8(text.to_vec()).map_err(|_| invalid("a text is not UTF-8"))?);
        at += 4 + len;
    }
    let vectors_end = at + header.rows * DIM * 4;
    let vector_bytes = body
        .get(at..vectors_end)
        .ok_or_else(|| invalid("vectors run past the end"))?;
    let vectors: Vec<f32> = vector_bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    let index_len = body
        .get(vectors_end..vectors_end + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or_else(|| invalid("index length missing"))?;
    let index_bytes = (vectors_end + 8)
        .checked_add(index_len)
        .and_then(|end| body.get(vectors_end + 8..end))
        .ok_or_else(|| invalid("index runs past the end"))?;
    let index = if index_len == 0 {
        None
    } else {
        Some(index_from_bytes(index_bytes, path)?)
    };
    Ok(Some(Snapshot {
        header,
        texts,
        vectors,
        index,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file whose checksum is right but whose header claims more rows than it holds (a bug, or
    /// a file written by hand): refused by name, before anything is allocated for them.
    #[test]
    fn a_header_claiming_more_rows_than_the_file_holds_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.snapshot");
        let header = Header {
            model_id: "test".into(),
            dim: DIM,
            rows: 1 << 40,
            index: String::new(),
            trained_on: 0,
            drift: None,
            created_usec: 0,
        };
        let json = serde_json::to_vec(&header).unwrap();
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&VERSION.to_le_bytes());
        body.extend_from_slice(&(json.len() as u32).to_le_bytes());
        body.extend_from_slice(&json);
        body.extend_from_slice(&0u64.to_le_bytes());
        let digest = Sha256::digest(&body);
        body.extend_from_slice(&digest);
        std::fs::write(&path, &body).unwrap();
        let error = read(&path).err().expect("refused").to_string();
        assert!(error.contains("1099511627776 rows"), "{error}");
    }
}
