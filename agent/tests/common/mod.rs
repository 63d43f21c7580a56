//! Test images built from Debian's busybox-static: a one-layer image written as a `docker
//! save` archive or an OCI image-layout archive, with real digests.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The uncompressed layer tar: /bin/busybox, applet symlinks, /etc/passwd and empty dirs.
pub fn busybox_layer() -> Vec<u8> {
    let busybox =
        std::fs::read("/bin/busybox").expect("/bin/busybox is missing: apt-get install busybox-static");
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str| {
        let mut h = new_header();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    for d in ["bin/", "etc/", "tmp/", "proc/", "sys/", "dev/", "www/"] {
        dir(&mut b, d);
    }
    let mut h = new_header();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", busybox.as_slice()).unwrap();
    for applet in
        ["sh", "echo", "cat", "grep", "sleep", "head", "httpd", "true", "false", "yes", "ls", "wget"]
    {
        let mut h = new_header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox").unwrap();
    }
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\n";
    let mut h = new_header();
    h.set_mode(0o644);
    h.set_size(passwd.len() as u64);
    b.append_data(&mut h, "etc/passwd", &passwd[..]).unwrap();
    let index = b"<h1>hello from busybox</h1>\n";
    let mut h = new_header();
    h.set_mode(0o644);
    h.set_size(index.len() as u64);
    b.append_data(&mut h, "www/index.html", &index[..]).unwrap();
    b.into_inner().unwrap()
}

fn new_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

/// Config JSON for the image: Cmd `sh`, user root, the layer's diff_id.
pub fn config(diff_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch(),
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap()
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = new_header();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, name, data).unwrap();
}

/// An OCI image-layout archive tagged `name` (the `org.opencontainers.image.ref.name`).
pub fn oci_archive(dir: &Path, name: &str) -> PathBuf {
    let layer = busybox_layer();
    let diff_id = sha256(&layer);
    let layer_gz = gzip(&layer);
    let config = config(&diff_id);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer_gz), "size": layer_gz.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&manifest), "size": manifest.len(),
            "platform": {"architecture": arch(), "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": name}}],
    }))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add_file(&mut b, "index.json", &index);
    for blob in [&config, &manifest, &layer_gz] {
        let d = sha256(blob);
        add_file(&mut b, &format!("blobs/sha256/{}", d.trim_start_matches("sha256:")), blob);
    }
    let path = dir.join("busybox-oci.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

/// A `docker save` archive with `RepoTags: [tag]`.
pub fn docker_archive(dir: &Path, tag: &str) -> PathBuf {
    let layer = busybox_layer();
    let diff_id = sha256(&layer);
    let config = config(&diff_id);
    let config_name = format!("{}.json", sha256(&config).trim_start_matches("sha256:"));
    let manifest = serde_json::to_vec(
        &serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer0/layer.tar"]}]),
    )
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    add_file(&mut b, &config_name, &config);
    add_file(&mut b, "layer0/layer.tar", &layer);
    add_file(&mut b, "manifest.json", &manifest);
    let path = dir.join("busybox-docker.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}
