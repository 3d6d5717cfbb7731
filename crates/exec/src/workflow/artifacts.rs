//! A workflow job's artifacts: the ones it receives from its needs, fetched before
//! the first step, and the ones it keeps of its workspace after the last.
//!
//! A received file is fetched with `GET {base_url}/{path}` (each path segment
//! percent-encoded), written under `{inputs_dir}/{artifact}/{path}` and checked
//! against its recorded size and sha256; a transfer longer than the recorded size
//! is stopped there.
//!
//! A kept artifact is a file of the workspace, kept as one file named by its file
//! name, or a directory, whose regular files are kept at their paths relative to it
//! (symbolic links are not followed: they are skipped with a note, as are sockets
//! and other special files). Each file is copied to
//! `{artifacts_dir}/{artifact}/{path}`, hashed while copied, and synced to disk, as
//! are the directories holding it.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reqwest::Url;
use ring::digest::{Context, SHA256};
use rota_core::workflow::{ArtifactFile, ArtifactRecord, ArtifactSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::note;
use crate::{ArtifactInput, ExecError, OutputBuffer};

/// Bytes copied at a time.
const COPY_CHUNK: usize = 64 * 1024;

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

fn check_name(artifact: &str) -> Result<(), ExecError> {
    rota_core::validate_name("", artifact).map_err(|_| ExecError::ArtifactNameInvalid {
        artifact: artifact.to_string(),
    })
}

/// Whether `path` is `/`-separated parts none of which is empty, `.` or `..`: a
/// path that stays inside the directory it is joined to.
fn is_inner_path(path: &str) -> bool {
    path.split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\0'))
}

/// Fetches every input into `{inputs_dir}/{name}/`, in order.
pub(crate) async fn fetch_inputs(
    inputs: &[ArtifactInput],
    headers: &[(String, String)],
    inputs_dir: &Path,
    output: &OutputBuffer,
) -> Result<(), ExecError> {
    if inputs.is_empty() {
        return Ok(());
    }
    let client = crate::http::client()?;
    for input in inputs {
        check_name(&input.name)?;
        let dir = inputs_dir.join(&input.name);
        let mut total: u64 = 0;
        for file in &input.files {
            fetch_file(client, input, headers, file, &dir).await?;
            total = total.saturating_add(file.size);
        }
        note(
            output,
            format_args!(
                "artifact {}: {} files, {total} bytes fetched",
                input.name,
                input.files.len()
            ),
        );
    }
    Ok(())
}

/// `{base_url}/{path}` with each segment of `path` percent-encoded.
fn file_url(input: &ArtifactInput, path: &str) -> Result<Url, ExecError> {
    let bad_base = || ExecError::InputUrl {
        artifact: input.name.clone(),
        base_url: input.base_url.clone(),
    };
    let mut url = Url::parse(&input.base_url).map_err(|_| bad_base())?;
    url.path_segments_mut()
        .map_err(|()| bad_base())?
        .pop_if_empty()
        .extend(path.split('/'));
    Ok(url)
}

async fn fetch_file(
    client: &reqwest::Client,
    input: &ArtifactInput,
    headers: &[(String, String)],
    file: &ArtifactFile,
    dir: &Path,
) -> Result<(), ExecError> {
    if !is_inner_path(&file.path) {
        return Err(ExecError::InputPath {
            artifact: input.name.clone(),
            path: file.path.clone(),
        });
    }
    let url = file_url(input, &file.path)?;
    let fetch_error = |source| ExecError::InputFetch {
        artifact: input.name.clone(),
        path: file.path.clone(),
        source,
    };
    // An artifact this node keeps is read from its own disk: no request, no
    // credentials (`file://` base URLs come from the dispatcher, never a user).
    let mut source = if url.scheme() == "file" {
        let path = url.to_file_path().map_err(|()| ExecError::InputUrl {
            artifact: input.name.clone(),
            base_url: input.base_url.clone(),
        })?;
        let local = tokio::fs::File::open(&path)
            .await
            .map_err(|source| ExecError::InputWrite {
                artifact: input.name.clone(),
                path: path.clone(),
                source,
            })?;
        Source::Local(local, path)
    } else {
        let mut request = client.get(url.clone());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let answer = request.send().await.map_err(fetch_error)?;
        if !answer.status().is_success() {
            return Err(ExecError::InputStatus {
                artifact: input.name.clone(),
                path: file.path.clone(),
                url: url.to_string(),
                status: answer.status().as_u16(),
            });
        }
        Source::Http(answer)
    };
    let target = dir.join(&file.path);
    let write_error = |source| ExecError::InputWrite {
        artifact: input.name.clone(),
        path: target.clone(),
        source,
    };
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(write_error)?;
    }
    let mut out = tokio::fs::File::create(&target)
        .await
        .map_err(write_error)?;
    let mut digest = Context::new(&SHA256);
    let mut got: u64 = 0;
    loop {
        let chunk = match &mut source {
            Source::Http(answer) => answer.chunk().await.map_err(fetch_error)?,
            Source::Local(local, path) => {
                let mut buf = vec![0u8; 64 * 1024];
                let n = local
                    .read(&mut buf)
                    .await
                    .map_err(|source| ExecError::InputWrite {
                        artifact: input.name.clone(),
                        path: path.clone(),
                        source,
                    })?;
                buf.truncate(n);
                (n > 0).then(|| bytes::Bytes::from(buf))
            }
        };
        let Some(chunk) = chunk else {
            break;
        };
        got = got.saturating_add(chunk.len() as u64);
        if got > file.size {
            break;
        }
        digest.update(&chunk);
        out.write_all(&chunk).await.map_err(write_error)?;
    }
    // A tokio file finishes its last write in the background unless flushed.
    out.flush().await.map_err(write_error)?;
    if got != file.size {
        return Err(ExecError::InputSize {
            artifact: input.name.clone(),
            path: file.path.clone(),
            expected: file.size,
            got,
        });
    }
    let sha256 = hex(digest.finish().as_ref());
    if sha256 != file.sha256 {
        return Err(ExecError::InputDigest {
            artifact: input.name.clone(),
            path: file.path.clone(),
            expected: file.sha256.clone(),
            got: sha256,
        });
    }
    Ok(())
}

/// Where a fetched file's bytes come from.
enum Source {
    Http(reqwest::Response),
    Local(tokio::fs::File, std::path::PathBuf),
}

/// Where the kept artifacts come from and go, and what to record them as.
pub(crate) struct Keep<'a> {
    pub(crate) specs: &'a [ArtifactSpec],
    pub(crate) workspace: &'a Path,
    pub(crate) artifacts_dir: &'a Path,
    /// The workflow job keeping them.
    pub(crate) job: &'a str,
    pub(crate) node: &'a str,
}

/// Copies the artifacts out of the workspace and answers their records, in the
/// order of the specs. On an error, what this call copied is removed again.
///
/// The copying runs on a blocking thread; dropping the future stops it before its
/// next chunk (and it then removes what it copied).
pub(crate) async fn keep(
    keep: Keep<'_>,
    output: &OutputBuffer,
) -> Result<Vec<ArtifactRecord>, ExecError> {
    if keep.specs.is_empty() {
        return Ok(Vec::new());
    }
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let copier = Copier {
        workspace: keep.workspace.to_path_buf(),
        artifacts_dir: keep.artifacts_dir.to_path_buf(),
        output: output.clone(),
        stop: Arc::clone(&stop.0),
    };
    let specs = keep.specs.to_vec();
    let task = tokio::task::spawn_blocking(move || {
        let mut records = Vec::with_capacity(specs.len());
        for spec in &specs {
            match copier.keep_one(spec) {
                Ok(files) => records.push(files),
                Err(err) => {
                    for spec in &specs {
                        copier.remove(spec);
                    }
                    return Err(err);
                }
            }
        }
        Ok(records)
    });
    let kept = task.await.map_err(ExecError::ArtifactTask)??;
    drop(stop);
    Ok(keep
        .specs
        .iter()
        .zip(kept)
        .map(|(spec, files)| ArtifactRecord {
            name: spec.name.clone(),
            job: keep.job.to_string(),
            node: keep.node.to_string(),
            size: files.iter().map(|f| f.size).fold(0, u64::saturating_add),
            files,
        })
        .collect())
}

/// Copies artifacts on a blocking thread.
struct Copier {
    workspace: PathBuf,
    artifacts_dir: PathBuf,
    output: OutputBuffer,
    /// Set when nobody waits for the copy any more.
    stop: Arc<AtomicBool>,
}

impl Copier {
    /// Removes what an earlier attempt or this one left of the artifact.
    fn remove(&self, spec: &ArtifactSpec) {
        let _ = fs::remove_dir_all(self.artifacts_dir.join(&spec.name));
    }

    /// Copies one artifact; its files sorted by path.
    fn keep_one(&self, spec: &ArtifactSpec) -> Result<Vec<ArtifactFile>, ExecError> {
        check_name(&spec.name)?;
        // Validation refuses such paths; joined, they would leave the workspace.
        let relative = Path::new(&spec.path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|part| matches!(part, std::path::Component::ParentDir))
        {
            return Err(ExecError::ArtifactPath {
                artifact: spec.name.clone(),
                path: spec.path.clone(),
            });
        }
        let source = self.workspace.join(relative);
        let read_error = |path: &Path, source| ExecError::ArtifactRead {
            artifact: spec.name.clone(),
            path: path.to_path_buf(),
            source,
        };
        let meta = match fs::symlink_metadata(&source) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(ExecError::ArtifactMissing {
                    artifact: spec.name.clone(),
                    path: spec.path.clone(),
                })
            }
            Err(err) => return Err(read_error(&source, err)),
        };
        let dest = self.artifacts_dir.join(&spec.name);
        match fs::remove_dir_all(&dest) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(ExecError::ArtifactWrite {
                    artifact: spec.name.clone(),
                    path: dest,
                    source: err,
                })
            }
            _ => {}
        }
        fs::create_dir_all(&dest).map_err(|source| ExecError::ArtifactWrite {
            artifact: spec.name.clone(),
            path: dest.clone(),
            source,
        })?;
        let mut dirs = BTreeSet::from([self.artifacts_dir.clone(), dest.clone()]);
        let mut files = Vec::new();
        let file_type = meta.file_type();
        if file_type.is_file() {
            // Only a path ending in `..` has no file name, and validation refuses
            // those; the artifact's name stands in should one get through.
            let name = match source.file_name() {
                Some(name) => name.to_str().ok_or_else(|| ExecError::ArtifactName {
                    artifact: spec.name.clone(),
                    path: source.clone(),
                })?,
                None => spec.name.as_str(),
            };
            files.push(self.copy(spec, &source, &dest, name, &mut dirs)?);
        } else if file_type.is_dir() {
            let mut pending = vec![(source, String::new())];
            while let Some((dir, prefix)) = pending.pop() {
                let entries = fs::read_dir(&dir).map_err(|err| read_error(&dir, err))?;
                for entry in entries {
                    let entry = entry.map_err(|err| read_error(&dir, err))?;
                    let path = entry.path();
                    let name = entry.file_name();
                    let name = name.to_str().ok_or_else(|| ExecError::ArtifactName {
                        artifact: spec.name.clone(),
                        path: path.clone(),
                    })?;
                    let relative = if prefix.is_empty() {
                        name.to_string()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    // The entry's own type: a symbolic link is not followed.
                    let kind = entry.file_type().map_err(|err| read_error(&path, err))?;
                    if kind.is_dir() {
                        pending.push((path, relative));
                    } else if kind.is_file() {
                        files.push(self.copy(spec, &path, &dest, &relative, &mut dirs)?);
                    } else {
                        note(
                            &self.output,
                            format_args!(
                                "artifact {}: skipped {relative} (a {}, not a regular file)",
                                spec.name,
                                kind_name(&kind)
                            ),
                        );
                    }
                }
            }
        } else {
            return Err(ExecError::ArtifactKind {
                artifact: spec.name.clone(),
                path: spec.path.clone(),
                kind: kind_name(&file_type),
            });
        }
        // The new entries last until the directories holding them are synced too.
        for dir in &dirs {
            File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|source| ExecError::ArtifactWrite {
                    artifact: spec.name.clone(),
                    path: dir.clone(),
                    source,
                })?;
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let size = files.iter().map(|f| f.size).fold(0, u64::saturating_add);
        note(
            &self.output,
            format_args!(
                "artifact {}: {} files, {size} bytes kept",
                spec.name,
                files.len()
            ),
        );
        Ok(files)
    }

    /// Copies `source` to `{dest}/{relative}`, hashing it on the way, and syncs it.
    fn copy(
        &self,
        spec: &ArtifactSpec,
        source: &Path,
        dest: &Path,
        relative: &str,
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<ArtifactFile, ExecError> {
        let read_error = |source_err| ExecError::ArtifactRead {
            artifact: spec.name.clone(),
            path: source.to_path_buf(),
            source: source_err,
        };
        let target = dest.join(relative);
        let write_error = |source_err| ExecError::ArtifactWrite {
            artifact: spec.name.clone(),
            path: target.clone(),
            source: source_err,
        };
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(write_error)?;
            dirs.extend(
                parent
                    .ancestors()
                    .take_while(|dir| dir.starts_with(dest))
                    .map(Path::to_path_buf),
            );
        }
        let mut input = File::open(source).map_err(read_error)?;
        let mut out = File::create(&target).map_err(write_error)?;
        let mut digest = Context::new(&SHA256);
        let mut size: u64 = 0;
        let mut buf = vec![0u8; COPY_CHUNK];
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(write_error(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the job was stopped",
                )));
            }
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(read_error(err)),
            };
            digest.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(write_error)?;
            size = size.saturating_add(n as u64);
        }
        out.sync_all().map_err(write_error)?;
        Ok(ArtifactFile {
            path: relative.to_string(),
            size,
            sha256: hex(digest.finish().as_ref()),
        })
    }
}

fn kind_name(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_symlink() {
        "symbolic link"
    } else if kind.is_dir() {
        "directory"
    } else if kind.is_file() {
        "file"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_fifo() {
        "fifo"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn inner_paths() {
        for ok in ["a", "a/b.txt", "dir/sub/x y", ".hidden/..x"] {
            assert!(is_inner_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "./a",
            "a//b",
            "a/",
            "a/.",
        ] {
            assert!(!is_inner_path(bad), "{bad}");
        }
    }

    #[test]
    fn file_urls_encode_each_segment() {
        let input = ArtifactInput {
            name: "cov".into(),
            base_url: "http://127.0.0.1:7000/v1/runs/r1/artifacts/cov".into(),
            files: vec![],
        };
        let url = file_url(&input, "dir/a b?#%.txt").map(|u| u.to_string());
        assert_eq!(
            url.ok().as_deref(),
            Some("http://127.0.0.1:7000/v1/runs/r1/artifacts/cov/dir/a%20b%3F%23%25.txt")
        );
        let input = ArtifactInput {
            base_url: "http://127.0.0.1:7000/files/".into(),
            ..input
        };
        let url = file_url(&input, "x").map(|u| u.to_string());
        assert_eq!(url.ok().as_deref(), Some("http://127.0.0.1:7000/files/x"));
    }
}
