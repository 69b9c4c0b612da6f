//! Profiles as users live with them: generations followed by mounts, rollback, rules, export,
//! env/shell/module, GC.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::time::Duration;

use crate::util::{fuse_available, mount, run_ok, snapshot, wait_for, TestStore};

/// Two small artifacts: `a` (an executable bin/a) and `b` (bin/b plus a unique share file).
fn two_artifacts(t: &TestStore) -> (String, String) {
    let a = t.path("a");
    let b = t.path("b");
    fs::create_dir_all(a.join("bin")).unwrap();
    fs::create_dir_all(b.join("bin")).unwrap();
    fs::create_dir_all(b.join("share/b")).unwrap();
    fs::write(a.join("bin/a"), "#!/bin/sh\necho from-a\n").unwrap();
    fs::set_permissions(a.join("bin/a"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(b.join("bin/b"), "content of b, generation one\n").unwrap();
    fs::write(b.join("share/b/data"), "only b has this ".repeat(1000)).unwrap();
    (t.add(&a, "a"), t.add(&b, "b"))
}

#[test]
fn mounts_follow_generations_open_files_survive_and_gc_frees_what_was_removed() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let (a, b) = two_artifacts(&t);
    t.ok(["profile", "create", "p", &a, &b]);
    let mnt = t.path("mnt");
    let _guard = mount(&t, "p", &mnt);
    assert!(mnt.join("bin/b").exists());
    let mut held = fs::File::open(mnt.join("bin/b")).unwrap();

    // Generation 2 without b: the same mount stops showing it within a second.
    t.ok(["profile", "create", "p", &a]);
    assert!(
        wait_for(Duration::from_secs(1), || !mnt.join("bin/b").exists()),
        "switch not seen"
    );
    assert!(mnt.join("bin/a").exists());
    // A process holding b open keeps reading the old content intact.
    let mut content = String::new();
    held.read_to_string(&mut content).unwrap();
    assert_eq!(content, "content of b, generation one\n");

    let history = t.ok(["profile", "history", "p"]);
    assert!(history.contains("*    2"), "{history}");
    assert_eq!(t.ok(["profile", "diff", "p", "1", "2"]).trim(), format!("- {b}"));
    t.ok(["profile", "rollback", "p"]);
    assert!(
        wait_for(Duration::from_secs(1), || mnt.join("bin/b").exists()),
        "rollback not seen"
    );
    t.ok(["profile", "switch", "p", "2"]);
    assert!(wait_for(Duration::from_secs(1), || !mnt.join("bin/b").exists()));

    // A pin keeps an artifact no profile uses; unpinned, GC frees it.
    let c = t.path("c");
    fs::create_dir_all(&c).unwrap();
    fs::write(c.join("pinned"), "kept by a pin").unwrap();
    let pinned = t.add(&c, "c");
    t.ok(["store", "pin", &pinned]);
    let kept: serde_json::Value = serde_json::from_str(&t.ok(["gc", "--dry-run", "--json"])).unwrap();
    assert!(!kept["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == &serde_json::json!(pinned)));
    t.ok(["store", "unpin", &pinned]);

    // GC keeping only current generations frees b's objects and nothing a profile needs.
    let dry: serde_json::Value =
        serde_json::from_str(&t.ok(["gc", "--dry-run", "--keep-generations", "0", "--json"])).unwrap();
    assert_eq!(dry["artifacts"], serde_json::json!([b, pinned]));
    assert!(mnt.join("bin/a").exists());
    let before = t.stats()["objects"].as_u64().unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&t.ok(["gc", "--keep-generations", "0", "--json"])).unwrap();
    assert_eq!(report["artifacts"], serde_json::json!([b, pinned]));
    assert!(report["objects"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(
        t.stats()["objects"].as_u64().unwrap(),
        before - report["objects"].as_u64().unwrap()
    );
    t.ok(["-q", "store", "verify"]);
    assert!(t.fails(["cat", &b, "bin/b"]).status.code().is_some());
    assert_eq!(
        fs::read_to_string(mnt.join("bin/a")).unwrap(),
        "#!/bin/sh\necho from-a\n"
    );
    assert_eq!(t.ok(["profile", "history", "p"]).lines().count(), 1);
    // Nothing left to collect.
    let again: serde_json::Value = serde_json::from_str(&t.ok(["gc", "--json"])).unwrap();
    assert_eq!(again["objects"], 0);
}

#[test]
fn rules_hide_and_reroot_paths_in_the_view_and_the_export() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let (a, b) = two_artifacts(&t);
    // Rules come from stack files; here straight through the library.
    let store = hdist_store::Store::open(&t.store()).unwrap();
    let record = |id: &str| store.find_artifact(id).unwrap();
    let (ra, rb) = (record(&a), record(&b));
    let doc = hdist_store::profile::ProfileDoc {
        artifacts: vec![
            hdist_store::profile::ProfileArtifact {
                id: ra.id.clone(),
                root: ra.root,
                rules: Vec::new(),
                view: None,
            },
            hdist_store::profile::ProfileArtifact {
                id: rb.id.clone(),
                root: rb.root,
                rules: vec![
                    hdist_store::profile::LinkRule {
                        action: hdist_store::profile::RuleAction::Exclude,
                        select: "bin/**".into(),
                        prefix: None,
                        target: None,
                    },
                    hdist_store::profile::LinkRule {
                        action: hdist_store::profile::RuleAction::Link,
                        select: "share/b/*".into(),
                        prefix: Some("share/b".into()),
                        target: Some("lib/b-data".into()),
                    },
                ],
                view: None,
            },
        ],
        env: [("B_DATA".to_string(), "$PROFILE/lib/b-data".to_string())].into(),
    };
    store.profiles().create_doc("r", &doc).unwrap();
    drop(store);
    let mnt = t.path("mnt");
    let _guard = mount(&t, "r", &mnt);
    assert!(!mnt.join("bin/b").exists(), "excluded path visible");
    assert!(mnt.join("bin/a").exists());
    assert!(
        !mnt.join("share/b").exists(),
        "re-rooted path still at its old place"
    );
    assert_eq!(
        fs::read_to_string(mnt.join("lib/b-data/data")).unwrap(),
        "only b has this ".repeat(1000)
    );

    // The same view as a plain directory, in every link mode; re-export replaces it whole.
    for mode in ["hardlink", "copy", "symlink"] {
        let out = t.path(&format!("export-{mode}"));
        t.ok([
            "profile".as_ref(),
            "export".as_ref(),
            "r".as_ref(),
            out.as_os_str(),
            "--link".as_ref(),
            mode.as_ref(),
        ]);
        let exported: Vec<_> = snapshot(&out).into_keys().collect();
        let viewed: Vec<_> = snapshot(&mnt).into_keys().collect();
        assert_eq!(exported, viewed, "{mode}");
        assert_eq!(
            fs::read_to_string(out.join("lib/b-data/data")).unwrap(),
            "only b has this ".repeat(1000)
        );
    }
    let out = t.path("export-hardlink");
    t.ok(["profile", "create", "r", &a]);
    t.ok([
        "profile".as_ref(),
        "export".as_ref(),
        "r".as_ref(),
        out.as_os_str(),
    ]);
    assert!(!out.join("lib").exists());
    assert!(out.join("bin/a").exists());

    // env, module and shell point at the mount.
    t.ok(["profile", "switch", "r", "1"]);
    let env = t.ok(["env", "r"]);
    assert!(
        env.contains(&format!("export PATH='{}/bin'", mnt.display())),
        "{env}"
    );
    assert!(
        env.contains(&format!("export B_DATA='{}/lib/b-data'", mnt.display())),
        "{env}"
    );
    assert!(t
        .ok(["env", "r", "--shell", "fish"])
        .contains("set -gx --prepend PATH"));
    let module = t.ok(["module", "r"]);
    assert!(
        module.contains("prepend_path(\"PATH\", pathJoin(root, \"bin\"))"),
        "{module}"
    );
    let out = t.ok(["shell", "r", "--", "a"]);
    assert_eq!(out.trim(), "from-a");
}

#[test]
fn shell_mounts_a_private_view_and_unmounts_it_afterwards() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let (a, _) = two_artifacts(&t);
    t.ok(["profile", "create", "solo", &a]);
    let out = run_ok(
        t.cmd([
            "shell",
            "solo",
            "--",
            "sh",
            "-c",
            "a; echo \"$HDIST_PROFILE_NAME\"; echo \"$HDIST_PROFILE\"; command -v a",
        ])
        .env("SHELL", "/bin/sh"),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-a");
    assert_eq!(lines[1], "solo");
    let used = Path::new(lines[3])
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    // $HDIST_PROFILE is the mount path (the prefix), as in `hdist trace record`.
    assert_eq!(Path::new(lines[2]), used);
    assert!(
        !crate::util::is_mounted(&used),
        "shell left {} mounted",
        used.display()
    );
    // The exit status of the command is the shell's.
    let status = t
        .cmd(["shell", "solo", "--", "sh", "-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
}
