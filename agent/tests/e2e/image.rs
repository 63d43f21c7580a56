//! Images end to end, as root: archives built from busybox-static are imported with the real
//! `flotilla-agent image import` (OCI layout and `docker save`), listed and removed, and a
//! container runs from the imported image on an overlay of its unpacked layers.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flotilla_agent::image::{ImageStore, RootfsPlan};
use flotilla_agent::runtime::shim::{Exited, Launch, RootfsSource, EXITED_FILE};
use flotilla_agent::runtime::spec::{self, ImageFacts, Namespaces, SpecInput};
use flotilla_shared::api::Object;

fn agent(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn import_list_run_and_remove() {
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "this test needs root (CI runs it as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let oci = common::oci_archive(tmp.path(), "flotilla.test/busybox:1.0");
    let docker = common::docker_archive(tmp.path(), "flotilla.test/busybox-docker:1.0");

    let out = ok(&agent(&state, &["image", "import", oci.to_str().unwrap()]));
    assert!(out.contains("imported flotilla.test/busybox:1.0"), "{out}");
    let out = ok(&agent(&state, &["image", "import", docker.to_str().unwrap()]));
    assert!(out.contains("imported flotilla.test/busybox-docker:1.0"), "{out}");
    let ls = ok(&agent(&state, &["image", "ls"]));
    assert!(
        ls.contains("flotilla.test/busybox:1.0") && ls.contains("flotilla.test/busybox-docker:1.0"),
        "{ls}"
    );
    // A tampered archive is refused (into a fresh store: a store that already holds the
    // verified layer never reads it again).
    let mut bad = std::fs::read(&docker).unwrap();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    std::fs::write(tmp.path().join("bad.tar"), bad).unwrap();
    let fresh = tmp.path().join("fresh");
    let out = agent(&fresh, &["image", "import", tmp.path().join("bad.tar").to_str().unwrap()]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sha256"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ok(&agent(&fresh, &["image", "ls"])).lines().count() == 1, "nothing imported");

    // Run a container from the OCI-imported image.
    let log = run_from_store(&state.join("images"), "flotilla.test/busybox:1.0", tmp.path());
    assert!(log.contains("hello from busybox"), "{log}");

    let out = ok(&agent(&state, &["image", "rm", "flotilla.test/busybox:1.0"]));
    assert!(out.contains("untagged flotilla.test/busybox:1.0"), "{out}");
    let ls = ok(&agent(&state, &["image", "ls"]));
    assert!(!ls.contains("flotilla.test/busybox:1.0 "), "{ls}");
    assert!(ls.contains("flotilla.test/busybox-docker:1.0"), "{ls}");
}

fn run_from_store(root: &Path, reference: &str, tmp: &Path) -> String {
    let store = ImageStore::open(root).unwrap();
    let record = store.resolve(reference).unwrap().expect("imported image");
    let layers = store.unpack(&record).unwrap();
    let facts = ImageFacts::from(&store.runtime_config(&record).unwrap());
    let upper = tmp.join("upper");
    let work = tmp.join("work");
    let rootfs = match flotilla_agent::image::plan_rootfs(&layers, true, &upper, &work).unwrap() {
        RootfsPlan::Overlay { .. } => {
            RootfsSource::Overlay { lower: layers.iter().map(|l| l.fs.clone()).collect(), upper, work }
        }
        RootfsPlan::Copy { reason } => panic!("expected overlay, got copy: {reason:?}"),
    };
    drop(store);
    let r = flotilla_shared::manifest::load_str(
        "p.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: from-image}\nspec:\n  containers:\n  - name: c\n    image: flotilla.test/busybox:1.0\n    args: [-c, 'cat /www/index.html; echo $PATH']\n",
    );
    let Object::Pod(pod) = r.objects.into_iter().next().unwrap().object else { panic!() };
    let bundle = tmp.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let id = format!("flotilla-img-{}", std::process::id());
    let config = spec::build(&SpecInput {
        pod: &pod.metadata,
        pod_spec: &pod.spec,
        container: &pod.spec.containers[0],
        image: &facts,
        rootfs: bundle.join("rootfs"),
        cgroups_path: format!("/flotilla-test/{id}"),
        namespaces: Namespaces::Own,
        env: vec![],
        mounts: vec![],
        user: (0, 0),
        additional_gids: vec![],
        pids_limit: 64,
        host_caps: vec![],
        swap_accounting: true,
    })
    .unwrap();
    // The image's Cmd is `sh`; `args` replaces it, so argv is the image's (empty) entrypoint + args.
    assert_eq!(config["process"]["args"][0], "-c");
    let mut config = config;
    config["process"]["args"] = serde_json::json!(["sh", "-c", "cat /www/index.html; echo $PATH"]);
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let launch = Launch {
        id,
        bundle: bundle.clone(),
        state_root: tmp.join("youki"),
        rootfs,
        log: tmp.join("c.log"),
        log_max_bytes: 1 << 20,
        status_dir: tmp.join("status"),
        memory_cgroup: None,
        allow_devices: false,
    };
    let lp: PathBuf = tmp.join("launch.json");
    std::fs::write(&lp, serde_json::to_vec(&launch).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla-agent")).arg("shim").arg(&lp).output().unwrap();
    let exited: Exited =
        serde_json::from_slice(&std::fs::read(tmp.join("status").join(EXITED_FILE)).unwrap_or_default())
            .unwrap_or_else(|_| panic!("no exit record: {}", String::from_utf8_lossy(&out.stderr)));
    let log = std::fs::read_to_string(tmp.join("c.log")).unwrap_or_default();
    assert_eq!(exited.exit_code, 0, "{exited:?}\n{log}\n{}", String::from_utf8_lossy(&out.stderr));
    log
}
