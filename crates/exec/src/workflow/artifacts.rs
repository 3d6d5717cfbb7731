//! Artifacts: keeping what a job left in its workspace (copied under the node's
//! artifact directory with size and sha256), and fetching what its needs kept
//! (checked against the recorded size and sha256).

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use futures_util::StreamExt;
use ring::digest::{Context, SHA256};
use rota_core::workflow::{ArtifactFile, ArtifactRecord, ArtifactSpec};
use tokio::io::AsyncWriteExt;

use crate::{ArtifactInput, OutputBuffer};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A relative, `/`-separated path without `..`, or `None`.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| p.to_path_buf())
}

/// Keeps `spec` from `workspace` under `{artifacts_dir}/{name}/`. Blocking (file
/// I/O): run it on a blocking thread.
pub(crate) fn keep(
    spec: &ArtifactSpec,
    job: &str,
    node: &str,
    workspace: &Path,
    artifacts_dir: &Path,
    output: &OutputBuffer,
) -> Result<ArtifactRecord, String> {
    let fail = |what: String| format!("artifact {}: {what}", spec.name);
    let source = workspace.join(spec.path.trim_end_matches('/'));
    let meta = std::fs::symlink_metadata(&source)
        .map_err(|_| fail(format!("{} does not exist in the workspace", spec.path)))?;
    let mut found = Vec::new();
    if meta.is_file() {
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| fail(format!("{} has no file name", spec.path)))?;
        found.push((source.clone(), name));
    } else if meta.is_dir() {
        walk(&source, "", &mut found, output, &spec.name).map_err(|e| fail(e.to_string()))?;
    } else {
        return Err(fail(format!(
            "{} is neither a file nor a directory",
            spec.path
        )));
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    let target = artifacts_dir.join(&spec.name);
    let mut files = Vec::with_capacity(found.len());
    for (path, rel) in found {
        let (size, sha256) = copy_hashed(&path, &target.join(&rel))
            .map_err(|e| fail(format!("keeping {rel}: {e}")))?;
        files.push(ArtifactFile {
            path: rel,
            size,
            sha256,
        });
    }
    let size = files.iter().map(|f| f.size).sum();
    output.push(
        format!(
            "==> artifact {}: {} files, {size} bytes kept\n",
            spec.name,
            files.len()
        )
        .as_bytes(),
    );
    Ok(ArtifactRecord {
        name: spec.name.clone(),
        job: job.to_string(),
        node: node.to_string(),
        size,
        files,
    })
}

/// Regular files under `dir`, with paths relative to the artifact's root.
fn walk(
    dir: &Path,
    prefix: &str,
    found: &mut Vec<(PathBuf, String)>,
    output: &OutputBuffer,
    artifact: &str,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &rel, found, output, artifact)?;
        } else if kind.is_file() {
            found.push((entry.path(), rel));
        } else {
            output.push(
                format!("==> artifact {artifact}: {rel} is not a regular file; left out\n")
                    .as_bytes(),
            );
        }
    }
    Ok(())
}

/// Copies `from` to `to` (creating its directory), fsyncs it, and answers its size
/// and sha256.
fn copy_hashed(from: &Path, to: &Path) -> std::io::Result<(u64, String)> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut input = std::fs::File::open(from)?;
    let mut out = std::fs::File::create(to)?;
    let mut digest = Context::new(&SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        size += n as u64;
    }
    out.sync_all()?;
    Ok((size, hex(digest.finish().as_ref())))
}

/// Fetches every file of `input` into `{dir}/{name}/{path}`, checking each
/// against its recorded size and sha256.
pub(crate) async fn fetch(
    input: &ArtifactInput,
    dir: &Path,
    output: &OutputBuffer,
) -> Result<(), String> {
    let fail = |what: String| format!("artifact {}: {what}", input.name);
    let client = crate::http::client().map_err(|e| fail(e.to_string()))?;
    let mut total = 0u64;
    for file in &input.files {
        let rel = safe_relative(&file.path)
            .ok_or_else(|| fail(format!("{:?} is not a relative path", file.path)))?;
        let url = format!(
            "{}/{}",
            input.base_url.trim_end_matches('/'),
            file.path
                .split('/')
                .map(percent_encode)
                .collect::<Vec<_>>()
                .join("/")
        );
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| fail(format!("fetching {}: {e}", file.path)))?;
        if !response.status().is_success() {
            return Err(fail(format!(
                "fetching {}: the node answered {}",
                file.path,
                response.status()
            )));
        }
        let target = dir.join(&input.name).join(rel);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| fail(format!("{}: {e}", parent.display())))?;
        }
        let mut out = tokio::fs::File::create(&target)
            .await
            .map_err(|e| fail(format!("{}: {e}", target.display())))?;
        let mut digest = Context::new(&SHA256);
        let mut size = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| fail(format!("fetching {}: {e}", file.path)))?;
            digest.update(&chunk);
            size += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .map_err(|e| fail(format!("{}: {e}", target.display())))?;
        }
        out.flush()
            .await
            .map_err(|e| fail(format!("{}: {e}", target.display())))?;
        let sha256 = hex(digest.finish().as_ref());
        if size != file.size || sha256 != file.sha256 {
            return Err(fail(format!(
                "{} does not match its record (got {size} bytes, sha256 {sha256}; recorded {} bytes, sha256 {})",
                file.path, file.size, file.sha256
            )));
        }
        total += size;
    }
    output.push(
        format!(
            "==> artifact {}: {} files, {total} bytes received\n",
            input.name,
            input.files.len()
        )
        .as_bytes(),
    );
    Ok(())
}

fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
