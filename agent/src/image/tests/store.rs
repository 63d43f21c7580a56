//! The store end to end: blob writes and their failures, tags, resolve, remove (with shared
//! blobs and layers), garbage collection, layer sharing and reopening.

use std::fs;
use std::path::Path;

use flotilla_shared::image::ImageRef;

use super::{base_layer, digest, names, tarball, ImageBlobs, Sandbox, E};
use crate::image::blobs::BlobError;
use crate::image::digest::{Digest, DigestError};
use crate::image::store::{ImageStore, StoreError};
use crate::image::unpack::UnpackOptions;

const OPTS: UnpackOptions = UnpackOptions { chown: false, mknod: false };

fn open(root: &Path) -> ImageStore {
    ImageStore::open_with(root, OPTS).unwrap()
}

fn add(store: &ImageStore, img: &ImageBlobs, tags: &[&str], now: u64) -> Digest {
    for (d, bytes) in img.blobs() {
        store.blobs().put_blob_sized(&bytes[..], &d, bytes.len() as u64).unwrap();
    }
    let tags: Vec<ImageRef> = tags.iter().map(|t| ImageRef::parse(t).unwrap()).collect();
    store.add_image(&img.manifest_digest(), &tags, now).unwrap().manifest
}

#[test]
fn blobs_are_verified_and_atomic() {
    let sb = Sandbox::new();
    let store = open(&sb.root);
    let blobs = store.blobs();
    let d = digest(b"hello");
    let info = blobs.put_blob(&b"hello"[..], &d).unwrap();
    assert!(info.written && info.size == 5);
    assert!(blobs.has_blob(&d));
    assert_eq!(fs::read(blobs.path(&d)).unwrap(), b"hello");
    assert_eq!(blobs.blob_size(&d).unwrap(), 5);
    let mut s = String::new();
    std::io::Read::read_to_string(&mut blobs.open_blob(&d).unwrap(), &mut s).unwrap();
    assert_eq!(s, "hello");
    assert!(!blobs.put_blob(&b"ignored"[..], &d).unwrap().written, "present blobs are not rewritten");

    let wrong = digest(b"other");
    match blobs.put_blob(&b"hello!"[..], &wrong) {
        Err(BlobError::DigestMismatch { expected, actual, size: 6 }) => {
            assert_eq!((expected, actual), (wrong.clone(), digest(b"hello!")));
        }
        other => panic!("{other:?}"),
    }
    let d2 = digest(b"twelve bytes");
    assert!(matches!(
        blobs.put_blob_sized(&b"twelve bytes"[..], &d2, 5),
        Err(BlobError::SizeMismatch { expected: 5, actual: 6, .. })
    ));
    assert!(matches!(
        blobs.put_blob_sized(&b"hello"[..], &d, 4),
        Err(BlobError::SizeMismatch { expected: 4, actual: 5, .. })
    ));
    assert!(!blobs.has_blob(&wrong) && !blobs.has_blob(&d2));
    assert!(matches!(blobs.open_blob(&wrong), Err(BlobError::NotFound { .. })));
    assert_eq!(names(&sb.root.join("blobs/sha256")), [d.hex()]);
    assert!(names(store.tmp_dir()).is_empty(), "failed writes leave no temp files");
    assert_eq!(blobs.total_size().unwrap(), 5);
    assert!(matches!(blobs.read_blob(&d, 4), Err(BlobError::TooLarge { size: 5, limit: 4, .. })));

    let sha512 = format!("sha512:{}", "ab".repeat(64));
    assert!(matches!(Digest::parse(&sha512), Err(DigestError::Unsupported { .. })));
    sb.assert_untouched();
}

#[test]
fn tags_resolve_remove_and_share() {
    let sb = Sandbox::new();
    let store = open(&sb.root);
    let shared = base_layer();
    let app = tarball(&[E::File("app/run", b"app")]);
    let tool = tarball(&[E::File("tool/run", b"tool")]);
    let a = ImageBlobs::new(&[shared.clone(), app], "amd64", None);
    let b = ImageBlobs::new(&[shared.clone(), tool], "amd64", None);
    let ma = add(&store, &a, &["app:1", "app:latest"], 100);
    let mb = add(&store, &b, &["registry.local:5000/tools/tool:2"], 200);

    // Resolve by every spelling.
    for r in ["app:1", "docker.io/library/app:1", "app", &format!("app@{ma}"), &ma.to_string()] {
        assert_eq!(store.resolve(r).unwrap().map(|r| r.manifest), Some(ma.clone()), "{r}");
    }
    assert_eq!(store.resolve("registry.local:5000/tools/tool:2").unwrap().unwrap().manifest, mb);
    assert_eq!(store.resolve("nope").unwrap(), None);
    assert!(matches!(store.resolve("Bad Ref"), Err(StoreError::Index(_))));
    let list = store.list();
    assert_eq!(list.len(), 2);
    let la = list.iter().find(|s| s.record.manifest == ma).unwrap();
    assert_eq!(la.tags, ["docker.io/library/app:1", "docker.io/library/app:latest"]);
    assert_eq!(la.record.layers.len(), 2);
    assert_eq!(
        la.record.size,
        (a.manifest.len() + a.config.len() + a.layers[0].len() + a.layers[1].len()) as u64
    );
    assert_eq!(la.record.created, 100);

    // Layer sharing: both images unpack the common layer once.
    let la_dirs = store.unpack(&store.resolve("app:1").unwrap().unwrap()).unwrap();
    let lb_dirs = store.unpack(&store.resolve("registry.local:5000/tools/tool:2").unwrap().unwrap()).unwrap();
    assert_eq!(la_dirs[0], lb_dirs[0]);
    assert_eq!(names(&sb.root.join("layers/sha256")).len(), 3);
    assert!(la_dirs[0].fs.join("bin/busybox").is_file());
    let rc = store.runtime_config(&store.resolve("app").unwrap().unwrap()).unwrap();
    assert_eq!(rc.cmd, ["/bin/sh"]);

    // Removing one of two tags keeps the image.
    let r = store.remove("app:1").unwrap();
    assert!(r.images.is_empty() && r.blobs.is_empty());
    assert!(store.resolve("app:1").unwrap().is_none());
    assert!(store.resolve("app:latest").unwrap().is_some());
    assert!(matches!(store.remove("app:1"), Err(StoreError::NotFound { .. })));

    // Removing the last tag deletes what only that image used; the shared layer stays.
    let r = store.remove("app:latest").unwrap();
    assert_eq!(r.images, std::slice::from_ref(&ma));
    let shared_gz = digest(&a.layers[0]);
    let app_gz = digest(&a.layers[1]);
    assert!(r.blobs.contains(&ma) && r.blobs.contains(&app_gz) && !r.blobs.contains(&shared_gz));
    assert_eq!(r.layers, [digest(&a.tars[1])]);
    assert!(!store.blobs().has_blob(&app_gz) && store.blobs().has_blob(&shared_gz));
    assert_eq!(names(&sb.root.join("layers/sha256")).len(), 2);
    assert!(lb_dirs[0].fs.join("bin/busybox").is_file());

    // Reopening reads the same index back.
    drop(store);
    let store = open(&sb.root);
    assert_eq!(store.list().len(), 1);
    // Removing by digest removes the image and its tags; then nothing is left.
    let r = store.remove(&format!("tool@{mb}")).unwrap();
    assert_eq!(r.tags, ["registry.local:5000/tools/tool:2"]);
    assert!(names(&sb.root.join("blobs/sha256")).is_empty());
    assert!(names(&sb.root.join("layers/sha256")).is_empty());
    assert!(store.list().is_empty());
    sb.assert_untouched();
}

#[test]
fn add_image_refuses_incomplete_or_inconsistent_images() {
    let sb = Sandbox::new();
    let store = open(&sb.root);
    let img = ImageBlobs::new(&[base_layer()], "amd64", None);
    let m = img.manifest_digest();
    // Nothing stored yet.
    assert!(matches!(store.add_image(&m, &[], 0), Err(StoreError::Blob(BlobError::NotFound { .. }))));
    // Manifest and config but no layer.
    store.blobs().put_blob(&img.manifest[..], &m).unwrap();
    store.blobs().put_blob(&img.config[..], &digest(&img.config)).unwrap();
    assert!(matches!(store.add_image(&m, &[], 0), Err(StoreError::Blob(BlobError::NotFound { .. }))));
    // A manifest that is not JSON.
    let junk = digest(b"junk");
    store.blobs().put_blob(&b"junk"[..], &junk).unwrap();
    assert!(matches!(store.add_image(&junk, &[], 0), Err(StoreError::Manifest { .. })));
    // More layers than diff_ids.
    let two = ImageBlobs::new(&[base_layer(), tarball(&[E::File("x", b"x")])], "amd64", None);
    let mut config: serde_json::Value = serde_json::from_slice(&two.config).unwrap();
    config["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
    let config = serde_json::to_vec(&config).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&two.manifest).unwrap();
    manifest["config"]["digest"] = digest(&config).to_string().into();
    manifest["config"]["size"] = config.len().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    for bytes in [&manifest, &config, &two.layers[0], &two.layers[1]] {
        store.blobs().put_blob(&bytes[..], &digest(bytes)).unwrap();
    }
    assert!(matches!(store.add_image(&digest(&manifest), &[], 0), Err(StoreError::BadManifest { .. })));
    assert!(store.list().is_empty());
}

#[test]
fn gc_deletes_least_recently_used_images_not_in_use() {
    let sb = Sandbox::new();
    let store = open(&sb.root);
    let imgs: Vec<ImageBlobs> = (0..3u8)
        .map(|i| {
            let data: &'static [u8] = Box::leak(vec![i; 1000].into_boxed_slice());
            ImageBlobs::new(&[tarball(&[E::File("data", data)])], "amd64", None)
        })
        .collect();
    let m0 = add(&store, &imgs[0], &["i0"], 10);
    let m1 = add(&store, &imgs[1], &["i1"], 20);
    let m2 = add(&store, &imgs[2], &["i2"], 30);
    store.touch(&m0, 40).unwrap(); // i0 is now the most recently used
    for m in [&m0, &m1, &m2] {
        store.unpack(&store.resolve(&m.to_string()).unwrap().unwrap()).unwrap();
    }
    let usage = store.usage().unwrap();
    assert_eq!(usage.layers, 3000);

    // Below the threshold: nothing happens.
    assert_eq!(store.gc(&[], usage.total(), 0).unwrap().images, Vec::<Digest>::new());
    // i1 is the least recently used but in use, so i2 goes; one image is enough for the target.
    let removed = store.gc(std::slice::from_ref(&m1), 0, usage.total() - 500).unwrap();
    assert_eq!(removed.images, std::slice::from_ref(&m2));
    assert_eq!(removed.tags, ["docker.io/library/i2:latest"]);
    assert!(store.resolve("i2").unwrap().is_none());
    assert!(!store.layers().path(&digest(&imgs[2].tars[0])).exists());
    assert!(store.usage().unwrap().total() < usage.total() - 1000);
    // With nothing in use and a target of zero, everything goes.
    let removed = store.gc(&[], 0, 0).unwrap();
    assert_eq!(removed.images, [m1, m0]);
    assert_eq!(store.usage().unwrap().total(), 0);
}

#[test]
fn sweep_orphans_and_tmp_cleanup() {
    let sb = Sandbox::new();
    let store = open(&sb.root);
    let img = ImageBlobs::new(&[base_layer()], "amd64", None);
    add(&store, &img, &["kept"], 1);
    let orphan = digest(b"orphan");
    store.blobs().put_blob(&b"orphan"[..], &orphan).unwrap();
    let stray = tarball(&[E::File("x", b"x")]);
    store.layers().unpack(&stray[..], &digest(&stray)).unwrap();
    // Leftovers of a dead process: a stray file, and a temp dir whose lock no one holds.
    fs::write(sb.root.join("tmp/leftover"), b"x").unwrap();
    fs::create_dir(sb.root.join("tmp/proc-1-1.d")).unwrap();
    fs::write(sb.root.join("tmp/proc-1-1.d/half-written"), b"x").unwrap();
    fs::write(sb.root.join("tmp/proc-1-1.lock"), b"").unwrap();
    fs::write(store.tmp_dir().join("in-progress"), b"x").unwrap();

    // Another process (here: another handle, the lock is per open file) opens the same store.
    let second = open(&sb.root);
    assert!(store.tmp_dir().join("in-progress").exists(), "a live store's temp dir is kept");
    assert!(!sb.root.join("tmp/leftover").exists());
    assert!(!sb.root.join("tmp/proc-1-1.d").exists(), "a dead process's temp dir is removed");
    // Each sees the other's changes.
    let other = ImageBlobs::new(&[base_layer()], "arm64", None);
    add(&second, &other, &["other"], 2);
    assert_eq!(store.list().len(), 2);
    store.remove("other").unwrap();
    assert_eq!(second.list().len(), 1);
    drop(second);

    drop(store);
    let store = open(&sb.root);
    assert_eq!(names(&sb.root.join("tmp")).len(), 2, "only our own temp dir and its lock");
    let removed = store.sweep_orphans().unwrap();
    assert_eq!(removed.blobs, [orphan]);
    assert_eq!(removed.layers, [digest(&stray)]);
    assert_eq!(store.list().len(), 1);
    assert_eq!(store.blobs().list().unwrap().len(), 3);
}

#[test]
fn corrupt_index_is_an_error() {
    let sb = Sandbox::new();
    fs::create_dir_all(&sb.root).unwrap();
    fs::write(sb.root.join("index.json"), b"{not json").unwrap();
    assert!(matches!(ImageStore::open_with(&sb.root, OPTS), Err(StoreError::IndexFile { .. })));
    fs::write(sb.root.join("index.json"), br#"{"version": 99, "tags": {}, "images": {}}"#).unwrap();
    assert!(matches!(ImageStore::open_with(&sb.root, OPTS), Err(StoreError::Index(_))));
}
