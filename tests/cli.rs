//! The command line as a newcomer meets it: what errors say (and that they say it once),
//! did-you-mean for misspelled names, progress on a terminal, help texts, `hdist mounts`,
//! shell completions and manual pages.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{
    fixture, fuse_available, hdist_bin, is_mounted, mount, run_ok, sample_tree, stderr, view_guard,
    write_file, MountGuard, TestStore,
};

/// A store with the sample tree as artifact `python` and a profile `sci` of it.
fn store_with_sci() -> (TestStore, String) {
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    let id = t.add(&src, "python");
    t.ok(["profile", "create", "sci", &id]);
    (t, id)
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Mounts a tmpfs (a mount that is not hdist's) on `dir`; the guard removes it.
fn mount_tmpfs(dir: &Path) -> MountGuard {
    fs::create_dir_all(dir).unwrap();
    let guard = MountGuard::new(dir);
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "cli-test-tmpfs"])
            .arg(dir),
    );
    guard
}

/// Runs `hdist --store STORE ARGS…` on a pseudo-terminal (util-linux `script`), so that
/// stderr is a terminal; expects success and returns what the terminal showed.
fn on_terminal(t: &TestStore, args: &[&str]) -> String {
    let (success, shown) = on_terminal_status(t, args);
    assert!(success, "{args:?} failed: {shown}");
    shown
}

/// [`on_terminal`] that also returns whether hdist succeeded.
fn on_terminal_status(t: &TestStore, args: &[&str]) -> (bool, String) {
    let mut line = format!("{} --store {}", hdist_bin().display(), t.store().display());
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("HDIST_STORE")
        .output()
        .expect("run script(1)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The one line an error printed (failing if there are more).
fn one_error_line(out: &Output) -> String {
    let text = stderr(out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected exactly one error line: {text}");
    assert!(lines[0].starts_with("hdist: error: "), "{text}");
    lines[0].to_string()
}

#[test]
fn umount_of_something_that_is_not_an_hdist_mount_says_so() {
    let t = TestStore::new();
    let dir = t.path("plain");
    fs::create_dir_all(&dir).unwrap();
    let out = t.fails(["umount".as_ref(), dir.as_os_str()]);
    let line = one_error_line(&out);
    assert!(
        line.contains(&format!("cannot unmount {}: it is not mounted", dir.display())),
        "{line}"
    );
    assert!(line.contains("`hdist mounts` lists"), "{line}");
    assert!(!line.contains("cannot mount on"), "{line}");
    if !is_root() {
        return;
    }
    // Someone else's mount is left alone.
    let other = t.path("tmpfs");
    let _guard = mount_tmpfs(&other);
    let out = t.fails(["umount".as_ref(), other.as_os_str()]);
    let line = one_error_line(&out);
    assert!(
        line.contains("it is a tmpfs mount of cli-test-tmpfs") && line.contains("not an hdist mount"),
        "{line}"
    );
    assert!(is_mounted(&other), "hdist umount removed a tmpfs");
}

#[test]
fn mounting_over_a_live_mount_names_what_is_mounted_there() {
    if !fuse_available() {
        return;
    }
    let (t, _) = store_with_sci();
    let mnt = t.path("sw");
    let _guard = mount(&t, "sci", &mnt);
    let listed: serde_json::Value = serde_json::from_str(&t.ok(["mounts", "--json"])).unwrap();
    let pid = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountpoint"] == mnt.display().to_string())
        .and_then(|m| m["pid"].as_u64())
        .expect("the mount and its pid are listed");
    let out = t.fails(["mount".as_ref(), "sci".as_ref(), mnt.as_os_str()]);
    let line = one_error_line(&out);
    let expected = format!(
        "it is already mounted (hdist profile sci of store {}, daemon PID {pid})",
        t.store().display()
    );
    assert!(line.contains(&expected), "{line}\nexpected: {expected}");
    assert!(!line.contains("not empty"), "{line}");
    if !is_root() {
        return;
    }
    let other = t.path("tmpfs");
    let _tmpfs = mount_tmpfs(&other);
    let out = t.fails(["mount".as_ref(), "sci".as_ref(), other.as_os_str()]);
    let line = one_error_line(&out);
    assert!(
        line.contains("already mounted (a tmpfs mount of cli-test-tmpfs, per /proc/self/mountinfo)"),
        "{line}"
    );
}

#[test]
fn env_tells_a_missing_profile_from_an_unmounted_one() {
    let (t, _) = store_with_sci();
    let out = t.fails(["env", "sic"]);
    let line = one_error_line(&out);
    assert!(
        line.contains(&format!(
            "no profile \"sic\" in store {}; did you mean \"sci\"?",
            t.store().display()
        )),
        "{line}"
    );
    assert!(!line.contains("not mounted"), "{line}");
    let out = t.fails(["env", "sci"]);
    let line = one_error_line(&out);
    assert!(
        line.contains("profile sci is not mounted")
            && line.contains("`hdist mount sci DIR`")
            && line.contains("`hdist shell sci`"),
        "{line}"
    );
}

#[test]
fn shell_prints_one_error_line_for_one_error() {
    let (t, _) = store_with_sci();
    let out = t.fails(["shell", "sic", "--", "true"]);
    let line = one_error_line(&out);
    assert!(line.contains("no profile \"sic\""), "{line}");
}

#[test]
fn hdist_profile_is_the_mount_path_in_shell_and_trace_record() {
    if !fuse_available() {
        return;
    }
    let (t, _) = store_with_sci();
    let probe = "test -x \"$HDIST_PROFILE/bin/tool\" && echo \"$HDIST_PROFILE_NAME at $HDIST_PROFILE\"";
    let from_shell = t.ok(["shell", "sci", "--", "sh", "-c", probe]);
    let trace = t.path("sci.trace");
    let from_trace = t.ok([
        "-q".as_ref(),
        "trace".as_ref(),
        "record".as_ref(),
        "sci".as_ref(),
        "--out".as_ref(),
        trace.as_os_str(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        probe.as_ref(),
    ]);
    for out in [&from_shell, &from_trace] {
        let (name, path) = out.trim().split_once(" at ").expect(out);
        assert_eq!(name, "sci");
        assert!(Path::new(path).is_absolute(), "{out}");
    }
    for command in [&["shell", "--help"][..], &["trace", "record", "--help"][..]] {
        let help = t.ok(command);
        assert!(
            help.contains("$HDIST_PROFILE and its name in $HDIST_PROFILE_NAME"),
            "{command:?}: {help}"
        );
    }
}

#[test]
fn export_shows_a_byte_progress_bar_only_on_a_terminal() {
    let t = TestStore::new();
    let src = t.path("big");
    fs::create_dir_all(&src).unwrap();
    // Incompressible, so the export takes more than an instant.
    let data: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(src.join("blob"), data).unwrap();
    let id = t.add(&src, "big");
    let shown = on_terminal(&t, &["export", &id, &t.path("out1").display().to_string()]);
    assert!(
        shown.contains("export") && shown.contains("MiB/32.00 MiB"),
        "no byte progress on the terminal: {shown:?}"
    );
    let quiet = on_terminal(&t, &["-q", "export", &id, &t.path("out2").display().to_string()]);
    assert!(!quiet.contains("MiB"), "-q showed progress: {quiet:?}");
    let out = t
        .cmd(["export".as_ref(), id.as_ref(), t.path("out3").as_os_str()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!stderr(&out).contains("MiB"), "{}", stderr(&out));
    assert_eq!(fs::metadata(t.path("out3/blob")).unwrap().len(), 32 << 20);
}

/// A fresh store whose store-wide view (which builds mount) the guard unmounts; None
/// without FUSE.
fn store_for_builds() -> Option<(TestStore, MountGuard)> {
    if !fuse_available() {
        return None;
    }
    let t = TestStore::new();
    let view = view_guard(&t);
    Some((t, view))
}

/// The six-package fixture stack, copied into the test's scratch area.
fn six_stack(t: &TestStore) -> PathBuf {
    let text = fs::read_to_string(fixture("stacks/six.toml")).unwrap();
    write_file(t, "six.toml", &text)
}

#[test]
fn up_shows_each_package_with_its_state_and_time() {
    let Some((t, _view)) = store_for_builds() else {
        return;
    };
    let stack = six_stack(&t);
    // Not a terminal: one plain line per event, with times.
    let out = t
        .cmd(["up".as_ref(), stack.as_os_str(), "-j2".as_ref()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    for package in [
        "six-base",
        "six-liba",
        "six-libb",
        "six-tool",
        "six-docs",
        "six-buildtool",
    ] {
        assert!(
            text.contains(&format!("{package}: building {package}/")),
            "{package} start missing: {text}"
        );
        let done = text
            .lines()
            .find(|l| l.starts_with(&format!("{package}: done in ")))
            .unwrap_or_else(|| panic!("{package} end missing: {text}"));
        assert!(done.trim_end().ends_with('s'), "no time in {done:?}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "escape sequences without a terminal: {text:?}"
    );
    // On a terminal: the live view, a line per package that settles on its state.
    let changed = fs::read_to_string(&stack)
        .unwrap()
        .replace("text = [\"base\"]", "text = [\"base 2\"]");
    fs::write(&stack, changed).unwrap();
    let shown = on_terminal(&t, &["up", &stack.display().to_string()]);
    for package in ["six-base", "six-liba", "six-libb", "six-tool"] {
        assert!(shown.contains(package), "{package} missing: {shown:?}");
    }
    assert!(shown.contains("waiting"), "no waiting state: {shown:?}");
    assert!(shown.contains("done in "), "no done state: {shown:?}");
    assert!(
        !shown.contains("six-base: building"),
        "plain lines on a terminal: {shown:?}"
    );
    // The summary starts its own line below the view.
    assert!(
        shown.lines().any(|l| l.starts_with("six: generation 2 (4 built")),
        "{shown:?}"
    );
}

#[test]
fn up_shows_a_failed_build_and_what_never_started() {
    let Some((t, _view)) = store_for_builds() else {
        return;
    };
    let stack = write_file(
        &t,
        "broken.toml",
        "[stack]\nprofile = \"broken\"\n\n\
         [[package]]\nname = \"bad\"\nversion = \"1\"\n\
         build = [{ set = \"PATH\", value = \"/usr/bin:/bin\" }, { cmd = [\"false\"] }]\n\n\
         [[package]]\nname = \"after-bad\"\nversion = \"1\"\nbuild_deps = [\"bad\"]\n\
         files = [{ target = \"$ARTIFACT/x\", text = [\"x\"] }]\n\
         build = [{ hit = [\"build-write-files\"] }]\n",
    );
    let out = t.fails(["up".as_ref(), stack.as_os_str()]);
    let text = stderr(&out);
    assert!(text.contains("bad: building bad/"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("bad: failed after ")),
        "{text}"
    );
    assert!(!text.contains("after-bad: building"), "{text}");
    let (success, shown) = on_terminal_status(&t, &["up", &stack.display().to_string()]);
    assert!(!success, "{shown}");
    assert!(shown.contains("failed after "), "{shown:?}");
    assert!(shown.contains("not started"), "{shown:?}");
}

#[test]
fn conflicts_says_when_there_are_none() {
    let t = TestStore::new();
    let (a, b) = (t.path("a"), t.path("b"));
    fs::create_dir_all(a.join("bin")).unwrap();
    fs::create_dir_all(b.join("lib")).unwrap();
    fs::write(a.join("bin/a"), "a").unwrap();
    fs::write(b.join("lib/b"), "b").unwrap();
    let (a, b) = (t.add(&a, "a"), t.add(&b, "b"));
    t.ok(["profile", "create", "ab", &a, &b]);
    assert_eq!(
        t.ok(["profile", "conflicts", "ab"]),
        "no conflicts: 2 artifacts in profile ab\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&t.ok(["profile", "conflicts", "ab", "--json"])).unwrap();
    assert_eq!(json, serde_json::json!([]));
}

#[test]
fn every_json_flag_has_a_help_text() {
    let t = TestStore::new();
    let commands: &[&[&str]] = &[
        &["ls"],
        &["store", "add"],
        &["store", "verify"],
        &["store", "stats"],
        &["profile", "list"],
        &["profile", "show"],
        &["profile", "history"],
        &["profile", "conflicts"],
        &["status"],
        &["info"],
        &["gc"],
        &["mounts"],
        &["publish"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let help = t.ok(&args);
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("--json"))
            .unwrap_or_else(|| panic!("{command:?} has no --json: {help}"));
        let text = line.trim_start().trim_start_matches("--json").trim();
        assert!(
            text.contains("JSON"),
            "{command:?}: --json without help: {line:?}"
        );
    }
}

#[test]
fn mounts_shows_the_store_of_each_mount() {
    if !fuse_available() {
        return;
    }
    let (first, _) = store_with_sci();
    let (second, _) = store_with_sci();
    let mnt1 = first.path("sw");
    let mnt2 = second.path("sw");
    let _guard1 = mount(&first, "sci", &mnt1);
    let _guard2 = mount(&second, "sci", &mnt2);
    let text = first.ok(["mounts"]);
    for (mnt, store) in [(&mnt1, first.store()), (&mnt2, second.store())] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{}\t", mnt.display())))
            .unwrap_or_else(|| panic!("{} not listed: {text}", mnt.display()));
        assert!(
            line.contains(&format!("hdist:sci\tstore {}\tpid ", store.display())),
            "{line}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&first.ok(["mounts", "--json"])).unwrap();
    for (mnt, store) in [(&mnt1, first.store()), (&mnt2, second.store())] {
        let row = json
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountpoint"] == mnt.display().to_string())
            .unwrap_or_else(|| panic!("{} not in {json}", mnt.display()));
        assert_eq!(row["store"], store.display().to_string());
        assert_eq!(row["daemon_alive"], true);
    }
}

#[test]
fn misspelled_names_get_a_did_you_mean_everywhere() {
    let (t, _) = store_with_sci();
    let out_dir = t.path("out");
    let mnt = t.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let artifact_cases: &[&[&str]] = &[
        &["ls", "pythn"],
        &["cat", "pythn", "bin/tool"],
        &["export", "pythn", out_dir.to_str().unwrap()],
        &["mount", "pythn", mnt.to_str().unwrap()],
    ];
    for args in artifact_cases {
        let line = one_error_line(&t.fails(*args));
        assert!(line.contains("did you mean \"python\"?"), "{args:?}: {line}");
    }
    let profile_cases: &[&[&str]] = &[
        &["profile", "show", "sic"],
        &["profile", "history", "sic"],
        &["mount", "sic", mnt.to_str().unwrap()],
        &["env", "sic"],
        &["shell", "sic"],
    ];
    for args in profile_cases {
        let line = one_error_line(&t.fails(*args));
        assert!(line.contains("did you mean \"sci\"?"), "{args:?}: {line}");
    }
    // Nothing close: no guess.
    let line = one_error_line(&t.fails(["ls", "gcc"]));
    assert!(!line.contains("did you mean"), "{line}");
    assert!(!is_mounted(&mnt) && !out_dir.exists());
}

/// What bash completes `hdist WORDS…` to, with the script `hdist completions bash` printed.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let out = run_ok(Command::new("bash").arg("-c").arg(format!(
        "source {script}; COMP_WORDS=({line}); COMP_CWORD={cword}; COMP_LINE='{line}'; \
         COMP_POINT=${{#COMP_LINE}}; _hdist hdist '{current}' '{previous}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display(),
        cword = words.len() - 1,
        current = words[words.len() - 1],
        previous = words[words.len() - 2],
    )));
    out.lines().map(str::to_string).collect()
}

#[test]
fn completion_scripts_know_the_subcommands_and_bash_runs_them() {
    let t = TestStore::new();
    let bash = t.ok(["completions", "bash"]);
    let script = write_file(&t, "hdist.bash", &bash);
    run_ok(Command::new("bash").arg("-n").arg(&script));
    // Completing for real: the subcommands that start with "st", then `up`'s options.
    let mut commands = bash_completes(&script, &["hdist", "st"]);
    commands.sort();
    assert_eq!(commands, ["status", "store"]);
    let options = bash_completes(&script, &["hdist", "up", "--"]);
    for option in ["--profile", "--jobs", "--keep-build", "--store"] {
        assert!(options.iter().any(|o| o == option), "{option} not in {options:?}");
    }
    for shell in ["zsh", "fish"] {
        let script = t.ok(["completions", shell]);
        for command in ["up", "mount", "info", "completions"] {
            assert!(script.contains(command), "{shell}: no {command} in\n{script}");
        }
    }
    let out = t.fails(["completions", "tcsh"]);
    assert!(stderr(&out).contains("possible values: bash"), "{}", stderr(&out));
    assert!(!t.store().exists(), "completions created a store");
}

#[test]
fn manual_pages_render_with_man() {
    let t = TestStore::new();
    let page = t.ok(["man"]);
    assert!(
        page.lines().any(|l| l.starts_with(".TH HDIST 1 ")),
        "{}",
        &page[..page.len().min(300)]
    );
    let dir = t.path("man1");
    let out = t
        .cmd(["man".as_ref(), "-o".as_ref(), dir.as_os_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in [
        "hdist.1",
        "hdist-up.1",
        "hdist-info.1",
        "hdist-store-verify.1",
        "hdist-trace-record.1",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    assert_eq!(fs::read_to_string(dir.join("hdist.1")).unwrap(), page);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(dir.join("hdist.1")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644, "manual pages must be readable by everyone");
    // man renders it: the name line and the subcommand list with their help texts.
    let rendered = run_ok(
        Command::new("man")
            .arg("-l")
            .arg(dir.join("hdist-info.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"),
    );
    // Words as man lays them out (justified): compare with spacing collapsed.
    let words = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("HDIST-INFO(1)"), "{rendered}");
    assert!(
        words.contains("hdist-info - Show one package of a stack file"),
        "{rendered}"
    );
    assert!(
        words.contains("--stack <FILE> Stack file (TOML) that defines the package"),
        "{rendered}"
    );
}
