//! Parsing and resolution of whole files: the example of the docs, every kind of
//! mistake, and the precedence of a target's keys over the top level.

use std::path::Path;

use crate::{Helper, Project, ProjectError};

fn is_remote(spec: &str) -> bool {
    spec.contains(':')
}

fn parse(text: &str) -> Result<Project, ProjectError> {
    Project::parse(Path::new("/p/relstore.toml"), text, &is_remote)
}

fn error(text: &str) -> String {
    let e = parse(text).expect_err("a bad file was accepted");
    let s = e.to_string();
    assert!(!s.contains('\n'), "not one line: {s}");
    s
}

const EXAMPLE: &str = r#"
source = "public"
keep = 10
exclude = ["*.map", ".DS_Store"]
hook_timeout = "30s"
helper = "off"

[targets.staging]
hosts = ["deploy@stage1:/srv/site"]

[targets.prod]
hosts = ["web1:/srv/site", "./out/prod"]
keep = 3
exclude = ["*.log"]
source = "./dist/"

[shared]
paths = ["uploads/", ".env"]

[hooks]
before_activate = "php artisan migrate --force"
after_activate  = "sudo systemctl reload php8.3-fpm"
"#;

#[test]
fn the_example_resolves_per_target() {
    let p = parse(EXAMPLE).expect("parse");
    let s = p.target("staging").expect("staging");
    assert_eq!(s.hosts, ["deploy@stage1:/srv/site"]);
    assert_eq!(s.source.as_deref(), Some(Path::new("/p/public")));
    assert_eq!(s.keep, Some(10));
    assert_eq!(s.exclude, ["*.map", ".DS_Store"]);
    assert_eq!(s.shared, ["uploads/", ".env"]);
    assert_eq!(s.hook_timeout.as_secs(), 30);
    assert_eq!(s.helper, Some(Helper::Off));
    assert_eq!(
        s.hooks.before_activate.as_deref(),
        Some("php artisan migrate --force")
    );
    assert_eq!(s.hooks.after_rollback, None);
    let prod = p.target("prod").expect("prod");
    assert_eq!(prod.hosts, ["web1:/srv/site", "/p/out/prod"]);
    assert_eq!(prod.keep, Some(3));
    assert_eq!(
        prod.exclude,
        ["*.log"],
        "a target's exclude replaces the top level's"
    );
    assert_eq!(prod.source.as_deref(), Some(Path::new("/p/dist/")));
    assert!(!prod.revert_on_hook_failure);
    let e = p.default_target().expect_err("two targets, no default");
    assert!(e.is_usage());
    assert!(e.to_string().contains("prod, staging"), "{e}");
}

#[test]
fn default_picks_a_target_and_one_target_is_the_default() {
    let p = parse(&format!("default = \"prod\"\n{EXAMPLE}")).expect("parse");
    assert_eq!(p.default_target().expect("default").name, "prod");
    let one = parse("[targets.only]\nhosts = [\"/srv/a\"]\n").expect("parse");
    assert_eq!(one.default_target().expect("only").name, "only");
    assert!(one.target("nope").expect_err("unknown").is_usage());
}

#[test]
fn mistakes_name_the_file_the_line_and_the_key() {
    let cases: &[(&str, &str)] = &[
        ("keep = 3\nsource = \"a\n", "/p/relstore.toml:2:"),
        (
            "keep = 3\nkepp = 4\n",
            "/p/relstore.toml:2: unknown field `kepp`",
        ),
        (
            "source = \"a\"\nkeep = \"ten\"\n",
            "/p/relstore.toml:2: keep: invalid type",
        ),
        (
            "[targets.a]\nhosts = []\n",
            "/p/relstore.toml:2: targets.a.hosts: empty",
        ),
        (
            "default = \"b\"\n[targets.a]\nhosts = [\"/x\"]\n",
            "/p/relstore.toml:1: default: no target `b` (targets: a)",
        ),
        (
            "format = 1\n",
            "/p/relstore.toml:1: format: a project file has no `format` key",
        ),
        (
            "helper = \"maybe\"\n",
            "/p/relstore.toml:1: helper: unknown variant `maybe`",
        ),
        (
            "hook_timeout = \"10 minutes\"\n",
            "/p/relstore.toml:1: hook_timeout: `10 minutes`",
        ),
        (
            "[hooks]\nbefore_activate = \"\"\n",
            "/p/relstore.toml:2: hooks.before_activate: an empty command",
        ),
        (
            "[hooks]\nafter_swap = \"x\"\n",
            "/p/relstore.toml:2: unknown field `after_swap`",
        ),
        (
            "[shared]\npaths = [\"../etc\"]\n",
            "/p/relstore.toml:2: shared.paths: shared path \"../etc\"",
        ),
        (
            "[targets.\"a b\"]\nhosts = [\"/x\"]\n",
            "/p/relstore.toml:1: targets.a b: a target name",
        ),
        (
            "[targets.a]\nhosts = [\"/x\", \"/x\"]\n",
            "/p/relstore.toml:2: targets.a.hosts: `/x` is listed twice",
        ),
        ("[targets.a]\nkeep = 2\n", "/p/relstore.toml:1:"),
        (
            "exclude = [\n  \"*.map\",\n  3,\n]\n",
            "/p/relstore.toml:3:",
        ),
    ];
    for (text, want) in cases {
        let got = error(text);
        assert!(
            got.starts_with(want),
            "for {text:?}\n got: {got}\nwant: {want}…"
        );
    }
}

#[test]
fn the_example_of_the_docs_is_a_valid_file() {
    let doc = include_str!("../../../docs/project-file.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let text = &doc[start..start + doc[start..].find("```").expect("its end")];
    let p = parse(text).expect("the documented example");
    assert_eq!(p.default_target().expect("default").name, "staging");
    assert_eq!(p.target("prod").expect("prod").keep, Some(20));
    assert_eq!(p.target("prod").expect("prod").hook_timeout.as_secs(), 300);
}

#[test]
fn a_tilde_is_the_home_directory() {
    use crate::resolve::under_home;
    let home = Path::new("/home/dev");
    assert_eq!(under_home("~", Some(home)), home);
    assert_eq!(under_home("~/site", Some(home)), home.join("site"));
    assert_eq!(
        under_home("~other/site", Some(home)),
        Path::new("~other/site")
    );
    assert_eq!(under_home("public", Some(home)), Path::new("public"));
    assert_eq!(under_home("~/site", None), Path::new("~/site"));
}
