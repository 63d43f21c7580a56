//! Importing OCI image layouts and `docker save` archives built here from busybox-like files.

use std::fs;
use std::path::{Path, PathBuf};

use super::{base_layer, digest, gzip, names, tarball, ImageBlobs, Sandbox, E};
use crate::image::archive::ArchiveError;
use crate::image::blobs::BlobError;
use crate::image::digest::Digest;
use crate::image::import::{ImportError, ANNOTATION_REF_NAME};
use crate::image::platform::{Platform, PlatformError};
use crate::image::store::ImageStore;
use crate::image::unpack::UnpackOptions;

const OPTS: UnpackOptions = UnpackOptions { chown: false, mknod: false };

enum M {
    File(String, Vec<u8>),
    Link(String, String),
}

/// An archive of regular files and symlinks.
fn archive(members: &[M]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        match m {
            M::File(name, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, &data[..]).unwrap();
            }
            M::Link(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn blob(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn write(sb: &Sandbox, name: &str, bytes: &[u8]) -> PathBuf {
    let p = sb.base.join("archives").join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, bytes).unwrap();
    p
}

fn descriptor(
    media_type: &str,
    bytes: &[u8],
    platform: Option<(&str, &str, Option<&str>)>,
) -> serde_json::Value {
    let mut d = serde_json::json!({"mediaType": media_type, "digest": digest(bytes).to_string(), "size": bytes.len()});
    if let Some((os, arch, variant)) = platform {
        d["platform"] = serde_json::json!({"os": os, "architecture": arch});
        if let Some(v) = variant {
            d["platform"]["variant"] = v.into();
        }
    }
    d
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An OCI layout with a multi-platform index (amd64, arm64/v8, an attestation-like entry)
/// named `docker.io/library/busybox:1.36`.
fn oci_multi_arch() -> (Vec<u8>, ImageBlobs, ImageBlobs) {
    let amd = ImageBlobs::new(&[base_layer(), tarball(&[E::File("arch", b"amd64")])], "amd64", None);
    let arm = ImageBlobs::new(&[base_layer(), tarball(&[E::File("arch", b"arm64")])], "arm64", Some("v8"));
    let attestation = b"{\"schemaVersion\":2}".to_vec();
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            descriptor(MANIFEST, &amd.manifest, Some(("linux", "amd64", None))),
            descriptor(MANIFEST, &arm.manifest, Some(("linux", "arm64", Some("v8")))),
            descriptor(MANIFEST, &attestation, Some(("unknown", "unknown", None))),
        ],
    }))
    .unwrap();
    let mut top = descriptor(INDEX, &nested, None);
    top["annotations"] = serde_json::json!({ANNOTATION_REF_NAME: "docker.io/library/busybox:1.36"});
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [top]})).unwrap();
    let mut members = vec![
        M::File("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        M::File("index.json".into(), index),
        M::File(blob(&digest(&nested)), nested.clone()),
        M::File(blob(&digest(&attestation)), attestation),
    ];
    for img in [&amd, &arm] {
        for (d, bytes) in img.blobs() {
            if !members.iter().any(|m| matches!(m, M::File(n, _) if *n == blob(&d))) {
                members.push(M::File(blob(&d), bytes));
            }
        }
    }
    (archive(&members), amd, arm)
}

#[test]
fn oci_layout_picks_the_device_platform() {
    let sb = Sandbox::new();
    let (bytes, amd, arm) = oci_multi_arch();
    let path = write(&sb, "busybox-oci.tar", &bytes);

    let store = ImageStore::open_with(&sb.root, OPTS).unwrap();
    let arm64 = Platform::new("linux", "arm64", None);
    let imported = store.import_archive(&path, &arm64, 500).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].tags, ["docker.io/library/busybox:1.36"]);
    let rec = &imported[0].record;
    assert_eq!(rec.manifest, arm.manifest_digest());
    assert_eq!(rec.platform, arm64);
    assert_eq!((rec.created, rec.last_used), (500, 500));
    assert_eq!(
        rec.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        [digest(&arm.tars[0]), digest(&arm.tars[1])]
    );
    // Only the chosen platform's blobs were stored.
    assert!(!store.blobs().has_blob(&amd.manifest_digest()));
    assert!(!store.blobs().has_blob(&digest(&amd.layers[1])));
    assert_eq!(store.blobs().list().unwrap().len(), 4);
    let layers = store.unpack(&store.resolve("busybox:1.36").unwrap().unwrap()).unwrap();
    assert_eq!(fs::read(layers[1].fs.join("arch")).unwrap(), b"arm64");
    assert!(layers[0].fs.join("bin/sh").is_file());
    assert_eq!(store.runtime_config(rec).unwrap().exposed_ports.len(), 1);

    // Importing again changes nothing but the last-use time.
    let again = store.import_archive(&path, &arm64, 600).unwrap();
    assert_eq!(again[0].record.created, 500);
    assert_eq!(store.list().len(), 1);

    // An amd64 device gets the amd64 image from the same archive.
    let store2 = ImageStore::open_with(&sb.base.join("store2"), OPTS).unwrap();
    let got = store2.import_archive(&path, &Platform::new("linux", "amd64", None), 1).unwrap();
    assert_eq!(got[0].record.manifest, amd.manifest_digest());

    // No match: the error lists what the archive offers.
    let store3 = ImageStore::open_with(&sb.base.join("store3"), OPTS).unwrap();
    let err = store3.import_archive(&path, &Platform::new("linux", "riscv64", None), 1).unwrap_err();
    match &err {
        ImportError::Platform { source: PlatformError::NoMatch { wanted, available }, .. } => {
            assert_eq!(wanted, "linux/riscv64");
            assert_eq!(available, &["linux/amd64", "linux/arm64", "unknown/unknown"]);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("linux/amd64, linux/arm64"), "{err}");
    assert!(store3.list().is_empty());
}

#[test]
fn oci_layout_with_tag_only_ref_takes_names_from_docker_manifest() {
    let sb = Sandbox::new();
    let img = ImageBlobs::new(&[base_layer()], "amd64", None);
    let mut d = descriptor(MANIFEST, &img.manifest, Some(("linux", "amd64", None)));
    d["annotations"] = serde_json::json!({ANNOTATION_REF_NAME: "latest"});
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [d]})).unwrap();
    // Docker 25+ writes both layouts.
    let docker = serde_json::to_vec(&serde_json::json!([{
        "Config": blob(&digest(&img.config)),
        "RepoTags": ["busybox:latest"],
        "Layers": [blob(&digest(&img.layers[0]))],
    }]))
    .unwrap();
    let mut members = vec![
        M::File("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        M::File("index.json".into(), index),
        M::File("manifest.json".into(), docker),
    ];
    members.extend(img.blobs().into_iter().map(|(d, b)| M::File(blob(&d), b)));
    let path = write(&sb, "docker25.tar", &gzip(&archive(&members)));
    let store = ImageStore::open_with(&sb.root, OPTS).unwrap();
    let imported = store.import_archive(&path, &Platform::new("linux", "amd64", None), 1).unwrap();
    assert_eq!(imported[0].tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(imported[0].record.manifest, img.manifest_digest());
}

/// A `docker save` of two images sharing their base layer, the second's `layer.tar` being a
/// symlink to the first's (as older Docker writes), plus a layer over 1 MiB (streamed, not
/// kept in memory).
fn docker_save() -> (Vec<u8>, Vec<Vec<u8>>, [Digest; 2]) {
    let big: &'static [u8] = Box::leak(vec![7u8; 1_200_000].into_boxed_slice());
    let tars = vec![base_layer(), tarball(&[E::File("app", b"app")]), tarball(&[E::File("big", big)])];
    let config = |layers: &[&Vec<u8>]| {
        let ids: Vec<String> = layers.iter().map(|t| digest(t).to_string()).collect();
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/bin/app"]},
            "rootfs": {"type": "layers", "diff_ids": ids},
        }))
        .unwrap()
    };
    let c1 = config(&[&tars[0], &tars[1]]);
    let c2 = config(&[&tars[0], &tars[2]]);
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": format!("{}.json", digest(&c1).hex()), "RepoTags": ["busybox:latest", "busybox:1"],
         "Layers": ["aaa/layer.tar", "bbb/layer.tar"]},
        {"Config": format!("{}.json", digest(&c2).hex()), "RepoTags": ["example.com/big:2"],
         "Layers": ["ccc/layer.tar", "ddd/layer.tar"]},
    ]))
    .unwrap();
    let members = vec![
        M::File("manifest.json".into(), manifest),
        M::File(format!("{}.json", digest(&c1).hex()), c1.clone()),
        M::File(format!("{}.json", digest(&c2).hex()), c2.clone()),
        M::File("aaa/layer.tar".into(), tars[0].clone()),
        M::File("bbb/layer.tar".into(), tars[1].clone()),
        M::Link("ccc/layer.tar".into(), "../aaa/layer.tar".into()),
        M::File("ddd/layer.tar".into(), tars[2].clone()),
        M::File("repositories".into(), b"{}".to_vec()),
    ];
    (archive(&members), tars, [digest(&c1), digest(&c2)])
}

#[test]
fn docker_save_archives_import_plain_and_gzipped() {
    let (bytes, tars, configs) = docker_save();
    for (name, bytes) in [("save.tar", bytes.clone()), ("save.tar.gz", gzip(&bytes))] {
        let sb = Sandbox::new();
        let path = write(&sb, name, &bytes);
        let store = ImageStore::open_with(&sb.root, OPTS).unwrap();
        let imported = store.import_archive(&path, &Platform::new("linux", "amd64", None), 7).unwrap();
        assert_eq!(imported.len(), 2, "{name}");
        assert_eq!(imported[0].tags, ["docker.io/library/busybox:1", "docker.io/library/busybox:latest"]);
        assert_eq!(imported[1].tags, ["example.com/big:2"]);
        let rec = store.resolve("busybox").unwrap().unwrap();
        assert_eq!(rec.config, configs[0]);
        // Uncompressed docker layers are stored under their diff_id.
        for (l, t) in rec.layers.iter().zip(&tars) {
            assert_eq!((l.digest.clone(), l.diff_id.clone()), (digest(t), digest(t)));
        }
        // The synthesized manifest is stored and hashes to the image's digest.
        assert_eq!(digest(&fs::read(store.blobs().path(&rec.manifest)).unwrap()), rec.manifest);
        let big = store.resolve("example.com/big:2").unwrap().unwrap();
        let a = store.unpack(&rec).unwrap();
        let b = store.unpack(&big).unwrap();
        assert_eq!(a[0], b[0], "shared base layer unpacked once");
        assert_eq!(fs::metadata(b[1].fs.join("big")).unwrap().len(), 1_200_000);
        assert_eq!(names(&sb.root.join("layers/sha256")).len(), 3);
        assert_eq!(store.runtime_config(&big).unwrap().entrypoint, ["/bin/app"]);
        // Same archive again: same manifest digests (deterministic synthesis).
        let again = store.import_archive(&path, &Platform::new("linux", "amd64", None), 8).unwrap();
        assert_eq!(again[0].record.manifest, rec.manifest);
        sb.assert_untouched();
    }
}

fn import_err(sb: &Sandbox, name: &str, bytes: &[u8], platform: &Platform) -> ImportError {
    let path = write(sb, name, bytes);
    let store = ImageStore::open_with(&sb.root, OPTS).unwrap();
    let err = store.import_archive(&path, platform, 1).unwrap_err();
    assert!(store.list().is_empty(), "{name}: nothing tagged after a failed import");
    assert!(names(store.tmp_dir()).is_empty(), "{name}: no temp files left");
    err
}

#[test]
fn tampered_and_unsupported_archives_are_refused() {
    let sb = Sandbox::new();
    let amd64 = Platform::new("linux", "amd64", None);

    // OCI: a layer blob whose content no longer matches its name.
    let img = ImageBlobs::new(&[base_layer()], "amd64", None);
    let d = descriptor(MANIFEST, &img.manifest, None);
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [d]})).unwrap();
    let layout = |blobs: Vec<(Digest, Vec<u8>)>| {
        let mut members = vec![
            M::File("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            M::File("index.json".into(), index.clone()),
        ];
        members.extend(blobs.into_iter().map(|(d, b)| M::File(blob(&d), b)));
        archive(&members)
    };
    let mut blobs = img.blobs();
    let last = blobs.len() - 1;
    blobs[last].1[20] ^= 1; // same size, different content
    match import_err(&sb, "tampered.tar", &layout(blobs), &amd64) {
        ImportError::Blob { source: BlobError::DigestMismatch { expected, .. }, .. } => {
            assert_eq!(expected, digest(&img.layers[0]))
        }
        other => panic!("{other}"),
    }
    // A tampered manifest (read into memory) is caught the same way.
    let mut blobs = img.blobs();
    blobs[0].1 = b"{\"schemaVersion\":2,\"config\":{}}".to_vec();
    assert!(matches!(
        import_err(&sb, "bad-manifest.tar", &layout(blobs), &amd64),
        ImportError::SizeMismatch { .. } | ImportError::DigestMismatch { .. }
    ));
    // A missing layer.
    let blobs = img.blobs()[..2].to_vec();
    assert!(matches!(
        import_err(&sb, "missing.tar", &layout(blobs), &amd64),
        ImportError::Archive(ArchiveError::Missing { .. })
    ));
    // Wrong platform for a single-platform image.
    let blobs = img.blobs();
    assert!(matches!(
        import_err(&sb, "wrong-arch.tar", &layout(blobs), &Platform::new("linux", "arm", Some("v7"))),
        ImportError::Platform { source: PlatformError::Mismatch { .. }, .. }
    ));

    // docker save: a config whose name does not match its content, and a layer that does not
    // match its diff_id.
    let (bytes, _, _) = docker_save();
    let tamper = |from: &[u8], to: &[u8]| {
        let mut b = bytes.clone();
        let at = b.windows(from.len()).position(|w| w == from).unwrap();
        b[at..at + to.len()].copy_from_slice(to);
        b
    };
    // The config's `Entrypoint` text lives inside the first config member.
    let err = import_err(&sb, "bad-config.tar", &tamper(b"/bin/app", b"/bin/bad"), &amd64);
    assert!(matches!(err, ImportError::DigestMismatch { .. }), "{err}");
    let err = import_err(&sb, "bad-layer.tar", &tamper(b"root:x:0:0", b"evil:x:0:0"), &amd64);
    assert!(matches!(err, ImportError::Blob { source: BlobError::DigestMismatch { .. }, .. }), "{err}");

    // Not an image archive; a compression we do not read.
    let err = import_err(&sb, "random.tar", &archive(&[M::File("hello".into(), b"x".to_vec())]), &amd64);
    assert!(matches!(err, ImportError::UnknownFormat { .. }), "{err}");
    let zstd = [&[0x28, 0xb5, 0x2f, 0xfd][..], b"whatever"].concat();
    let err = import_err(&sb, "x.tar.zst", &zstd, &amd64);
    assert!(matches!(err, ImportError::Archive(ArchiveError::Compression { format: "zstd", .. })), "{err}");
    let err = import_err(&sb, "not-a-tar", &b"garbage ".repeat(200), &amd64);
    assert!(matches!(err, ImportError::Archive(ArchiveError::Read { .. })), "{err}");
    let missing = sb.base.join("nope.tar");
    let store = ImageStore::open_with(&sb.root, OPTS).unwrap();
    assert!(matches!(
        store.import_archive(Path::new(&missing), &amd64, 1),
        Err(ImportError::Archive(ArchiveError::Open { .. }))
    ));
    sb.assert_untouched();
}
